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
    Export {
        /// Where to write it (default: stdout).
        file: Option<PathBuf>,
        /// As short lines to print and type back, each with a checksum.
        #[arg(long)]
        paper: bool,
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
        Command::Export { file, paper } => {
            let out = if paper {
                eventi::keys::paper::export(&text, &name)?
            } else {
                text.clone()
            };
            match file {
                Some(f) => {
                    use std::io::Write;
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut w = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&f)
                        .with_context(|| format!("creating {} (it must not exist)", f.display()))?;
                    w.write_all(out.as_bytes())
                        .and_then(|()| w.sync_all())
                        .with_context(|| format!("writing {}", f.display()))?;
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
            let timeout = eventi::home::config::Config::load(&home.config_file())?.timeout()?;
            let options = eventi_shared::client::ClientOptions {
                write_key: Some(secrets.signing_key()),
                timeout,
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
