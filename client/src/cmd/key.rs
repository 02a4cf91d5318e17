//! `eventi key`: show the public write key, export the key file (as it
//! is, or on paper), change the passphrase.

use std::path::PathBuf;

use anyhow::Context;

use eventi::home::Home;
use eventi::keys::{keyfile, passphrase};

/// `eventi key` subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Print the public write key line (no passphrase needed).
    Public,
    /// Export the sealed key file (still protected by the passphrase) to
    /// FILE or stdout, for `eventi init --recover`; keep it away from the
    /// servers your backups are on.
    ///
    /// With --write-only: a new key file for another machine, which backs
    /// up (deduplicated with this key's backups, sealed to this key) but
    /// cannot read any snapshot; its write key is its own, and the machine
    /// is recorded in config.toml so `eventi snapshots --all` lists it.
    Export {
        /// Where to write it (default: stdout; required with --write-only).
        #[arg(required_if_eq("write_only", "true"))]
        file: Option<PathBuf>,
        /// As short lines to print and type back, each with a checksum.
        #[arg(long, conflicts_with = "write_only")]
        paper: bool,
        /// A write-only key for another machine (sealed under a new
        /// passphrase: $EVENTI_NEW_PASSPHRASE, --new-passphrase-file or a prompt).
        #[arg(long)]
        write_only: bool,
        /// The machine's name in config.toml and listings (default: FILE's name).
        #[arg(long, requires = "write_only")]
        name: Option<String>,
        /// This key's passphrase, from a file (--write-only).
        #[arg(long, requires = "write_only")]
        passphrase_file: Option<PathBuf>,
        /// The new key's passphrase, from a file (--write-only).
        #[arg(long, requires = "write_only")]
        new_passphrase_file: Option<PathBuf>,
    },
    /// Check that a server accepts the write key (authenticates, writes nothing).
    Check {
        /// The server, HOST:PORT.
        #[arg(long)]
        server: String,
        /// The passphrase, from a file.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Change the key file's passphrase; no backup is touched.
    Passwd {
        /// The current passphrase, from a file.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// The new passphrase, from a file ($EVENTI_NEW_PASSPHRASE or a prompt otherwise).
        #[arg(long)]
        new_passphrase_file: Option<PathBuf>,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<()> {
    let path = Home::locate()?.key_file();
    if !path.exists() {
        anyhow::bail!(
            "no key file at {}: run `eventi init` (or set EVENTI_HOME)",
            path.display()
        );
    }
    let name = path.display().to_string();
    let text = keyfile::read(&path)?;
    match cmd {
        Command::Public => println!("{}", keyfile::public_write_key(&text, &name)?),
        Command::Export {
            file: Some(file),
            write_only: true,
            name,
            passphrase_file,
            new_passphrase_file,
            ..
        } => export_write_only(
            &file,
            name,
            passphrase_file.as_deref(),
            new_passphrase_file.as_deref(),
        )?,
        Command::Export { file, paper, .. } => {
            let out = if paper {
                eventi::keys::paper::export(&text, &name)?
            } else {
                text.clone()
            };
            match file {
                Some(f) => {
                    write_new(&f, &out)?;
                    eprintln!("exported the sealed key to {}", f.display());
                }
                None => print!("{out}"),
            }
        }
        Command::Check {
            server,
            passphrase_file,
        } => {
            let secrets = super::open_secrets(passphrase_file.as_deref())?;
            let home = eventi::home::Home::locate()?;
            let config = eventi::home::config::Config::load(&home.config_file())?;
            let timeout = config.timeout()?;
            let server_key = match config.find(&server) {
                Some(spec) => spec.session_key()?,
                None => eventi_shared::client::ServerKey::Learn,
            };
            let options = eventi_shared::client::ClientOptions {
                write_key: Some(secrets.signing_key()),
                timeout,
                server_key,
                ..Default::default()
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime
                .block_on(eventi_shared::VentiClient::connect_with(
                    server.as_str(),
                    options,
                ))
                .with_context(|| format!("server {server} did not accept the write key"))?;
            println!("server {server} accepts the write key");
        }
        Command::Passwd {
            passphrase_file,
            new_passphrase_file,
        } => {
            let old = passphrase::get(
                passphrase_file.as_deref(),
                "EVENTI_PASSPHRASE",
                "Current passphrase",
                false,
            )?;
            let secrets = keyfile::open(&text, old.as_bytes(), &name)?;
            let new = passphrase::get(
                new_passphrase_file.as_deref(),
                "EVENTI_NEW_PASSPHRASE",
                "New passphrase",
                true,
            )?;
            keyfile::write(&path, &keyfile::seal(&secrets, new.as_bytes()))?;
            eprintln!("passphrase changed for {name}");
        }
    }
    Ok(())
}

/// Writes `text` to a new file `path` (mode 0600; it must not exist).
fn write_new(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut w = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist)", path.display()))?;
    w.write_all(text.as_bytes())
        .and_then(|()| w.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// `key export --write-only FILE`: a write-only key for another machine,
/// recorded in the config under `name`.
fn export_write_only(
    file: &std::path::Path,
    name: Option<String>,
    passphrase_file: Option<&std::path::Path>,
    new_passphrase_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use eventi::home::config::{self, Config, Machine};
    let home = Home::locate()?;
    let name = match name {
        Some(n) => n,
        None => file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .context("give the machine a --name")?,
    };
    if Config::load(&home.config_file())?
        .machines
        .iter()
        .any(|m| m.name == name)
    {
        anyhow::bail!("a machine is called {name:?} already: give another --name");
    }
    let key_path = home.key_file();
    let owner_pass = passphrase::get(passphrase_file, "EVENTI_PASSPHRASE", "Passphrase", false)?;
    let owner = keyfile::open(
        &keyfile::read(&key_path)?,
        owner_pass.as_bytes(),
        &key_path.display().to_string(),
    )?;
    if owner.is_write_only() {
        anyhow::bail!("this home holds a write-only key: only the owner's full key exports keys");
    }
    let machine = owner.write_only_for_another_machine();
    let pass = passphrase::get(
        new_passphrase_file,
        "EVENTI_NEW_PASSPHRASE",
        "Passphrase for the machine's key",
        true,
    )?;
    write_new(file, &keyfile::seal(&machine, pass.as_bytes()))?;
    let line = machine.write_key_public();
    config::add_machine(
        &home.config_file(),
        &Machine {
            name: name.clone(),
            key: line.clone(),
            head: None,
        },
    )?;
    // Kept on the servers too, so that a home recovered from the key
    // alone lists this machine again.
    let published = eventi::repo::Repo::open_with(&owner_pass, eventi::repo::Access::Write)
        .and_then(|repo| {
            let kept = eventi::machines::publish(&repo)?;
            repo.close()?;
            Ok(kept)
        });
    match published {
        Ok(0) => {}
        Ok(n) => eprintln!("the machine list is kept on {n} server(s) for `eventi init --recover`"),
        Err(e) => eprintln!(
            "eventi: the machine list is in config.toml but not on the servers ({e:#}); the next export puts it there"
        ),
    }
    eprintln!(
        "exported a write-only key for machine {name} to {}: on it, `eventi init --import-key {}`",
        file.display(),
        file.display()
    );
    eprintln!("its write key (each server's operator must authorize it):");
    println!("{line}");
    Ok(())
}
