//! `eventi init`: a new key file and config; (`--recover`) a home
//! rebuilt from an exported key and the servers' heads; or
//! (`--import-key`) a home set up from an exported key, full or
//! write-only (a machine that backs up but cannot read).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use eventi::home::config::ServerSpec;
use eventi::home::Home;
use eventi::keys::{keyfile, passphrase};

/// Options of `eventi init`.
#[derive(clap::Args)]
pub struct Args {
    /// A venti server to back up to (repeatable); none means the embedded store.
    #[arg(long = "server", value_name = "HOST:PORT")]
    servers: Vec<String>,
    /// Use this 32-byte convergence secret (64 hex digits) instead of a new
    /// one, to deduplicate with others who share it.
    #[arg(long)]
    convergence_secret_file: Option<PathBuf>,
    /// Read the passphrase from this file instead of $EVENTI_PASSPHRASE or a prompt.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
    /// Rebuild a lost home from an exported key (`--key FILE` or `--paper`
    /// typed on stdin) and the heads on the servers.
    #[arg(long, requires = "servers")]
    recover: bool,
    /// The exported key file (`eventi key export`).
    #[arg(long, requires = "recover", conflicts_with = "paper")]
    key: Option<PathBuf>,
    /// Read the paper key (`eventi key export --paper`) from stdin.
    #[arg(long, requires = "recover")]
    paper: bool,
    /// Set up this home from an exported key file: the owner's (`eventi
    /// key export`) or a write-only one (`eventi key export --write-only`).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["recover", "convergence_secret_file"])]
    import_key: Option<PathBuf>,
    /// How the servers' identities are pinned (--server-key with one
    /// --server only).
    #[command(flatten)]
    pin: super::pinning::PinArgs,
}

/// Asks for the passphrase of a new key file (twice on a terminal).
pub fn new_passphrase(file: Option<&Path>) -> anyhow::Result<zeroize::Zeroizing<String>> {
    Ok(passphrase::get(
        file,
        "EVENTI_PASSPHRASE",
        "New passphrase for the key file",
        true,
    )?)
}

pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    if args.pin.server_key.is_some() && args.servers.len() != 1 {
        bail!("--server-key pins one server: give exactly one --server (add more with `eventi server add`)");
    }
    if args.recover {
        return recover(&args);
    }
    if let Some(file) = &args.import_key {
        let text = keyfile::read(file)?;
        return install(&args, &text);
    }
    let home = Home::locate()?;
    if home.key_file().exists() {
        bail!(
            "{} exists already; eventi init never replaces a key file (move it away first if you mean to)",
            home.key_file().display()
        );
    }
    let servers = pinned(&args)?;
    let pass = new_passphrase(args.passphrase_file.as_deref())?;
    let public = create(&servers, args.convergence_secret_file.as_deref(), &pass)?;
    println!("{public}");
    Ok(std::process::ExitCode::SUCCESS)
}

/// `init --recover`: the key from its export, checked with the
/// passphrase; the config; the newest head from the servers.
fn recover(args: &Args) -> anyhow::Result<std::process::ExitCode> {
    let text = match (&args.key, args.paper) {
        (Some(f), _) => keyfile::read(f)?,
        (None, true) => {
            use std::io::Read;
            eprintln!("type or paste the paper key, then end with Ctrl-D:");
            let mut typed = String::new();
            std::io::stdin()
                .read_to_string(&mut typed)
                .context("reading the paper key from stdin")?;
            eventi::keys::paper::import(&typed)?
        }
        (None, false) => bail!("--recover needs --key FILE or --paper"),
    };
    install(args, &text)
}

/// Writes the exported key `text` (checked with its passphrase first)
/// and a config naming the servers into an empty home, then finds the
/// newest head this key keeps on them.
fn install(args: &Args, text: &str) -> anyhow::Result<std::process::ExitCode> {
    let pass = passphrase::get(
        args.passphrase_file.as_deref(),
        "EVENTI_PASSPHRASE",
        "Passphrase of the exported key",
        false,
    )?;
    // Refuse a wrong passphrase or a damaged key before writing anything.
    let secrets = keyfile::open(text, pass.as_bytes(), "the exported key")?;
    if secrets.is_write_only() && args.servers.is_empty() {
        bail!("a write-only key backs up to servers its owner reads from: give --server HOST:PORT");
    }
    let home = Home::locate()?;
    let key_path = home.key_file();
    if key_path.exists() {
        bail!(
            "{} exists already; recover into an empty home (or set EVENTI_HOME)",
            key_path.display()
        );
    }
    let servers = pinned(args)?;
    eventi::home::create_private_dir(&home.config)?;
    // The key last: a recovery killed before it can simply be run again.
    write_config(&home, &servers)?;
    keyfile::write(&key_path, text)?;
    if secrets.is_write_only() {
        return install_write_only(&secrets, &pass);
    }
    let repo = eventi::repo::Repo::open_with(&pass, eventi::repo::Access::Read)?;
    match repo.newest_head()? {
        Some((root, seq)) => {
            repo.destination.set_local_head(&repo.home, &root, seq)?;
            let chain = repo.chain()?;
            eprintln!(
                "recovered: head {root} (sequence {seq}), {} snapshot(s); `eventi snapshots` lists them",
                chain.len()
            );
        }
        None => eprintln!(
            "the key is back, but no server keeps a head for it: give a root score to `eventi restore`"
        ),
    }
    recover_machines(&repo)?;
    repo.close()?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Writes the machine list the servers keep into the new config, so that
/// `eventi snapshots --all` lists the write-only machines' chains again.
fn recover_machines(repo: &eventi::repo::Repo) -> anyhow::Result<()> {
    let machines = match eventi::machines::fetch(repo) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("eventi: the machine list could not be read: {e:#}");
            return Ok(());
        }
    };
    for m in &machines {
        eventi::home::config::add_machine(&repo.home.config_file(), m)?;
    }
    if !machines.is_empty() {
        let names: Vec<&str> = machines.iter().map(|m| m.name.as_str()).collect();
        eprintln!(
            "recovered {} write-only machine(s): {}",
            machines.len(),
            names.join(", ")
        );
    }
    Ok(())
}

/// The end of a write-only key's install: its own head, if it backed up
/// before (a reinstalled machine continues its chain).
fn install_write_only(
    secrets: &keyfile::Secrets,
    pass: &str,
) -> anyhow::Result<std::process::ExitCode> {
    eprintln!(
        "imported a write-only key: this machine backs up, but cannot list, read or restore snapshots"
    );
    eprintln!("its write key (each server's operator must authorize it):");
    println!("{}", secrets.write_key_public());
    match eventi::repo::Repo::open_with(pass, eventi::repo::Access::Repair) {
        Ok(repo) => {
            if let Some((root, seq)) = repo.newest_head()? {
                repo.destination.set_local_head(&repo.home, &root, seq)?;
                eprintln!("its chain continues from head {root} (sequence {seq})");
            }
            repo.close()?;
        }
        Err(e) => eprintln!("eventi: no server could be asked for this machine's head yet: {e:#}"),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The `--server`s, each with the identity pinned for it.
fn pinned(args: &Args) -> anyhow::Result<Vec<ServerSpec>> {
    let timeout = eventi::home::config::Config::default().timeout()?;
    args.servers
        .iter()
        .map(|address| {
            Ok(ServerSpec::Named {
                name: address.clone(),
                address: address.clone(),
                key: super::pinning::pin(address, &args.pin, timeout)?,
                plain: args.pin.plain,
            })
        })
        .collect()
}

/// Writes a new `config.toml` naming `servers`.
/// Writes a new config.toml naming `servers`. A config.toml written
/// before the key (its `paths`, `exclude`, `tags` for the first backup)
/// is kept, the servers it does not list yet added to it.
fn write_config(home: &Home, servers: &[ServerSpec]) -> anyhow::Result<()> {
    let config = home.config_file();
    let listed: Vec<String> = eventi::home::config::Config::load(&config)?
        .servers
        .iter()
        .map(|s| s.address().to_string())
        .collect();
    if !config.exists() {
        std::fs::write(
            &config,
            "# eventi configuration\n# Servers to back up to; empty means the embedded local store.\nservers = []\n",
        )
        .with_context(|| format!("writing {}", config.display()))?;
    }
    for spec in servers
        .iter()
        .filter(|s| !listed.iter().any(|a| a == s.address()))
    {
        eventi::home::config::add_server(&config, spec)?;
    }
    Ok(())
}

/// Creates the key file and config (also used by `eventi backup` on an
/// uninitialized home). Returns the public write key line.
pub fn create(
    servers: &[ServerSpec],
    convergence_secret_file: Option<&std::path::Path>,
    pass: &str,
) -> anyhow::Result<String> {
    let home = Home::locate()?;
    let key_path = home.key_file();
    if key_path.exists() {
        bail!(
            "{} exists already; eventi init never replaces a key file (move it away first if you mean to)",
            key_path.display()
        );
    }
    let convergence = match convergence_secret_file {
        None => None,
        Some(f) => {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let mut secret = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut secret)
                .with_context(|| format!("{} must hold 64 hex digits", f.display()))?;
            Some(secret)
        }
    };
    eventi::home::create_private_dir(&home.config)?;
    let secrets = keyfile::Secrets::generate(convergence);
    keyfile::write(&key_path, &keyfile::seal(&secrets, pass.as_bytes()))?;
    write_config(&home, servers)?;
    eprintln!(
        "created {} and {}",
        key_path.display(),
        home.config_file().display()
    );
    eprintln!("your public write key (send it to the operator of a server you want to write to):");
    Ok(secrets.write_key_public())
}
