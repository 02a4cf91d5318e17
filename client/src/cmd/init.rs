//! `eventi init`: a new key file and config.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

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
    let pass = new_passphrase(args.passphrase_file.as_deref())?;
    let public = create(
        &args.servers,
        args.convergence_secret_file.as_deref(),
        &pass,
    )?;
    println!("{public}");
    Ok(std::process::ExitCode::SUCCESS)
}

/// Creates the key file and config (also used by `eventi backup` on an
/// uninitialized home). Returns the public write key line.
pub fn create(
    servers: &[String],
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
    let config = home.config_file();
    let servers: Vec<String> = servers.iter().map(|s| format!("{s:?}")).collect();
    std::fs::write(
        &config,
        format!(
            "# eventi configuration\n# Servers to back up to; empty means the embedded local store.\nservers = [{}]\n",
            servers.join(", ")
        ),
    )
    .with_context(|| format!("writing {}", config.display()))?;
    eprintln!("created {} and {}", key_path.display(), config.display());
    eprintln!("your public write key (send it to the operator of a server you want to write to):");
    Ok(secrets.write_key_public())
}
