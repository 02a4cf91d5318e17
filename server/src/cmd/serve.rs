//! `eventi-server serve`: run the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use eventi_server::admin::socket::{socket_path, AdminSocket};
use eventi_server::config::{Config, LogFormat};
use eventi_server::keys::KeyRegistry;
use eventi_server::metrics::Metrics;
use eventi_server::state::Shared;
use eventi_server::{http, server, shutdown};
use eventi_store::{EngineKind, Store};

/// Flags; each overrides the config file's value.
#[derive(clap::Args)]
pub struct Args {
    /// Data directory (created if missing).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Venti address [default: 127.0.0.1:17034].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// HTTP metrics address, or "off" [default: 127.0.0.1:17035].
    #[arg(long)]
    http: Option<String>,
    /// TOML config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Storage engine for a new data directory.
    #[arg(long, value_enum)]
    engine: Option<EngineKind>,
    /// The s3 engine's object store URL (credentials: --s3-credentials,
    /// or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY).
    #[arg(long, value_name = "URL")]
    s3_endpoint: Option<String>,
    /// The s3 engine's bucket (it must exist).
    #[arg(long, value_name = "NAME")]
    bucket: Option<String>,
    /// Object names start with this (several stores in one bucket).
    #[arg(long, value_name = "PREFIX")]
    s3_prefix: Option<String>,
    /// A TOML file with access_key_id and secret_access_key (mode 0600).
    #[arg(long, value_name = "FILE")]
    s3_credentials: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Bytes anonymous sessions may write in all ("10GiB", "unlimited");
    /// by default they may not write.
    #[arg(long)]
    anonymous_write_quota: Option<String>,
    /// What needs an encrypted session [default: keyed-writes].
    #[arg(long, value_enum)]
    require_encryption: Option<eventi_server::config::RequireEncryption>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(d) = args.data {
        config.data = Some(d);
    }
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(h) = args.http {
        config.http = if h == "off" { String::new() } else { h };
    }
    // The engine the command line asks for, to check against an existing
    // data directory's (a flag that would be ignored is an error).
    let asked_engine = args
        .engine
        .or(args.s3_endpoint.as_ref().map(|_| EngineKind::S3));
    if let Some(e) = args.engine {
        config.storage.engine = e;
    }
    let s3 = &mut config.storage.s3;
    if let Some(endpoint) = args.s3_endpoint {
        s3.endpoint = Some(endpoint);
    }
    if let Some(bucket) = args.bucket {
        s3.bucket = Some(bucket);
    }
    if let Some(prefix) = args.s3_prefix {
        s3.prefix = prefix;
    }
    if let Some(file) = args.s3_credentials {
        s3.credentials_file = Some(file);
    }
    if let Some(f) = args.log_format {
        config.log_format = f;
    }
    if let Some(q) = args.anonymous_write_quota {
        config.auth.anonymous_write_quota = Some(q);
    }
    if let Some(r) = args.require_encryption {
        config.auth.require_encryption = r;
    }
    config.validate()?;
    init_logging(config.log_format);
    let data = config
        .data
        .clone()
        .context("no data directory: pass --data DIR or set `data` in the config file")?;

    super::require_owner(&data)?;
    if let (Some(asked), Some(made)) = (asked_engine, eventi_store::engine_of(&data)?) {
        if made != asked {
            anyhow::bail!(
                "{} is a {} store (its ENGINE file): --engine {} and the --s3-* flags apply to a new data directory only",
                data.display(),
                made.name(),
                asked.name()
            );
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("eventi-server")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let store = tokio::task::spawn_blocking({
            let data = data.clone();
            let options = config.storage.clone();
            move || Store::open(&data, &options)
        })
        .await?
        .with_context(|| format!("opening data directory {}", data.display()))?;
        let identity = eventi_server::identity::Identity::load_or_create(&data)?;
        tracing::info!(
            identity = %eventi_shared::identity::format(&identity.public(), ""),
            fingerprint = %eventi_shared::identity::fingerprint(&identity.public()),
            "server identity"
        );
        let exposures = eventi_store::private::audit(&data);
        for e in &exposures {
            tracing::warn!(problem = %e, "the data directory is not private to the server's user");
        }
        let stats = store.stats();
        tracing::info!(data = %data.display(), blocks = stats.blocks, bytes = stats.bytes, "store open");
        let keys = Arc::new(
            KeyRegistry::load(store.clone(), config.auth.anonymous_quota()?)
                .context("loading write keys")?,
        );
        store.set_policy(keys.clone());
        let metrics = Arc::new(Metrics::new());
        metrics.data_dir_exposures.set(exposures.len() as i64);
        let shared = Arc::new(Shared {
            store: store.clone(),
            data: data.clone(),
            metrics: Arc::clone(&metrics),
            limits: config.limits.clone(),
            keys,
            anonymous_reads: config.auth.anonymous_reads,
            require_encryption: config.auth.require_encryption,
            heads_lock: std::sync::Mutex::new(()),
            identity,
            prune: config.prune.clone(),
            compactor: match config.prune.compact_interval_secs {
                0 => eventi_server::compactor::Compactor::disabled(),
                secs => eventi_server::compactor::Compactor::start(
                    store.clone(),
                    config.prune.compact_options(),
                    std::time::Duration::from_secs(secs),
                    metrics.compaction_passes.clone(),
                ),
            },
        });
        let listener = server::bind(config.listen).await?;
        let venti_addr = listener.local_addr()?;
        let (stop_tasks, _) = shutdown::channel();
        if store.shares_records() {
            // Other servers on the bucket add, change and remove keys.
            let every = std::time::Duration::from_millis(config.storage.s3.poll_millis.max(100));
            let (keys, mut rx) = (Arc::clone(&shared.keys), stop_tasks.handle());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = rx.wait() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                    let keys = Arc::clone(&keys);
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || keys.reload()).await {
                        tracing::warn!(error = %e, "reading the write keys again failed");
                    }
                }
            });
        }
        let mut http_addr = String::from("off");
        let http_task = if config.http.is_empty() {
            None
        } else {
            let addr: SocketAddr = config
                .http
                .parse()
                .with_context(|| format!("http address {:?}", config.http))?;
            let l = server::bind(addr).await?;
            http_addr = l.local_addr()?.to_string();
            let mut rx = stop_tasks.handle();
            let allowed = http::AllowedHosts::new(&config.http_allowed_hosts);
            Some(tokio::spawn(http::serve(l, Arc::clone(&shared), allowed, async move {
                rx.wait().await
            })))
        };
        let admin = AdminSocket::bind(&data).with_context(|| {
            format!("creating the admin socket {}", socket_path(&data).display())
        })?;
        let admin_task = {
            let mut rx = stop_tasks.handle();
            tokio::spawn(admin.serve(Arc::clone(&shared.keys), metrics, async move {
                rx.wait().await
            }))
        };
        // Tests and scripts read the bound addresses from this line.
        let stop = server::shutdown_signal();
        let admin_path = socket_path(&data);
        println!(
            "eventi-server listening venti={venti_addr} http={http_addr} admin={}",
            admin_path.display()
        );
        tracing::info!(venti = %venti_addr, http = %http_addr, admin = %admin_path.display(), "listening");
        let after = Arc::clone(&shared);
        server::serve(listener, shared, stop).await;
        stop_tasks.fire();
        if let Some(t) = http_task {
            let _ = t.await;
        }
        // The socket's file goes with the task that owns it.
        let _ = admin_task.await;
        tokio::task::spawn_blocking(move || {
            after.compactor.stop();
            store.shutdown()
        })
            .await?
            .context("syncing the store at shutdown")?;
        tracing::info!("stopped cleanly");
        Ok(ExitCode::SUCCESS)
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EVENTI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
