//! `eventi server add|list|remove`: the circle of servers in the config.

use std::path::PathBuf;
use std::process::ExitCode;

use eventi::home::config::{self, Config, ServerSpec};
use eventi::home::shortfalls::Shortfalls;
use eventi::home::Home;
use eventi::store::destination::{self, shortfalls_path};

/// `eventi server` subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Add a server to the circle. The chain, the caches and the stat cache
    /// are kept; the new server holds nothing until `eventi repair` fills it.
    Add {
        /// The server, HOST:PORT.
        address: String,
        /// A name for it (default: its address).
        #[arg(long)]
        name: Option<String>,
        /// How its identity is pinned.
        #[command(flatten)]
        pin: super::pinning::PinArgs,
    },
    /// List the circle's servers: reachable, latency, whether the write key
    /// is authorized, its quota and usage. Exit 1 if any does not answer.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
        /// The passphrase, from a file.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Remove a server (by name or address) from the circle. Nothing is
    /// deleted on it.
    Remove {
        /// Its name or address.
        name: String,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let home = Home::locate()?;
    let config_path = home.config_file();
    match cmd {
        Command::Add { address, name, pin } => {
            if !address.contains(':') {
                anyhow::bail!("{address:?} is not HOST:PORT");
            }
            let timeout = Config::load(&config_path)?.timeout()?;
            let key = super::pinning::pin(&address, &pin, timeout)?;
            let spec = ServerSpec::Named {
                name: name.unwrap_or_else(|| address.clone()),
                address: address.clone(),
                key,
                plain: pin.plain,
            };
            let had_snapshots = home.heads_dir().join("circle").exists();
            let was_local = Config::load(&config_path)?.servers.is_empty()
                && home.heads_dir().join("local").exists();
            config::add_server(&config_path, &spec)?;
            if was_local {
                eprintln!(
                    "note: the snapshots so far are in the embedded store ({}); backups now go to the circle and start a new chain there (remove every server to see the old chain again)",
                    home.store_dir().display()
                );
            }
            if had_snapshots {
                let mut book = Shortfalls::load(&shortfalls_path(&home, "circle"))?;
                let today =
                    eventi_shared::time::format_utc(eventi::fsmeta::now_ns() / 1_000_000_000);
                book.joined(&address, &today);
                book.save()?;
                eprintln!(
                    "added {}; it holds none of the circle's snapshots yet: run `eventi repair --all` to fill it",
                    spec.name()
                );
            } else {
                eprintln!("added {}", spec.name());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Remove { name } => {
            let spec = config::remove_server(&config_path, &name)?;
            let path = shortfalls_path(&home, "circle");
            let mut book = Shortfalls::load(&path)?;
            book.forget(spec.address());
            book.save()?;
            eprintln!(
                "removed {} ({}); its blocks stay on it",
                spec.name(),
                spec.address()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::List {
            json,
            passphrase_file,
        } => list(&home, json, passphrase_file),
    }
}

/// What `server list` says about one server.
#[derive(serde::Serialize)]
struct Row {
    name: String,
    address: String,
    reachable: bool,
    /// Why not, when it is not.
    error: Option<String>,
    latency_ms: Option<f64>,
    /// Whether it accepted the write key (`None`: unreachable).
    authorized: Option<bool>,
    /// The key's name there, quota and usage, where the server says.
    key_name: Option<String>,
    quota_bytes: Option<u64>,
    used_bytes: Option<u64>,
    used_blocks: Option<u64>,
}

fn list(home: &Home, json: bool, passphrase_file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = Config::load(&home.config_file())?;
    let key = super::open_secrets(passphrase_file.as_deref())?.signing_key();
    let timeout = config.timeout()?;
    let connected = destination::connect_all(&config.servers, Some(&key), timeout);
    let mut rows = Vec::new();
    for (spec, c) in config.servers.iter().zip(connected) {
        let mut row = Row {
            name: spec.name().to_string(),
            address: spec.address().to_string(),
            reachable: false,
            error: None,
            latency_ms: None,
            authorized: None,
            key_name: None,
            quota_bytes: None,
            used_bytes: None,
            used_blocks: None,
        };
        let connected = match c {
            Ok(c) => Ok(c),
            // A server that refuses the key still answers anonymously.
            Err(e) if e.contains("authentication failed") => {
                row.error = Some(e);
                destination::connect(spec, None, timeout)
            }
            Err(e) => Err(e),
        };
        match connected {
            Ok((store, latency)) => {
                row.reachable = true;
                row.latency_ms = Some(latency.as_secs_f64() * 1e3);
                row.authorized = Some(store.authenticated());
                if let Ok(Some(info)) = store.keyinfo() {
                    row.key_name = Some(info.name);
                    row.quota_bytes = Some(info.quota);
                    row.used_bytes = Some(info.used);
                    row.used_blocks = Some(info.blocks);
                }
            }
            Err(e) => row.error = Some(e),
        }
        rows.push(row);
    }
    let copies = config.copies()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        println!("no servers: backups go to the embedded store");
    } else {
        for r in &rows {
            let state = match (r.reachable, r.latency_ms) {
                (true, Some(ms)) => format!("up {ms:.1} ms"),
                _ => "DOWN".to_string(),
            };
            let key = match r.authorized {
                Some(true) => {
                    let quota = match r.quota_bytes {
                        Some(u64::MAX) => "no quota".to_string(),
                        Some(q) => format!("quota {}", super::human_bytes(q)),
                        None => String::new(),
                    };
                    let used = r
                        .used_bytes
                        .map(|u| format!(", {} used", super::human_bytes(u)))
                        .unwrap_or_default();
                    format!("key authorized {quota}{used}")
                }
                Some(false) => "key NOT authorized (reads only)".to_string(),
                None => String::new(),
            };
            let error = r
                .error
                .as_ref()
                .map(|e| format!("  {e}"))
                .unwrap_or_default();
            let label = if r.name == r.address {
                r.name.clone()
            } else {
                format!("{} {}", r.name, r.address)
            };
            println!("{label}  {state}  {key}{error}");
        }
        println!("copies = {copies} of {} server(s)", config.servers.len());
    }
    Ok(if rows.iter().all(|r| r.reachable) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
