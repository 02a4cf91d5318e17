//! `eventi`: the encrypted backup client. So far it makes and manages the
//! key file (the write key that servers authorize, and the secrets later
//! commands encrypt with); backup, restore and the rest follow.

mod cmd;

use clap::{Parser, Subcommand};

/// Encrypted, deduplicating backups into venti blocks.
#[derive(Parser)]
#[command(name = "eventi", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a key file and config in $EVENTI_HOME (or ~/.config/eventi).
    Init(cmd::init::Args),
    /// Show the public write key, check it against a server, or change the passphrase.
    #[command(subcommand)]
    Key(cmd::key::Command),
}

fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Init(args) => cmd::init::run(args),
        Command::Key(cmd) => cmd::key::run(cmd),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eventi: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
