//! `eventi-server keys`: authorize write keys and manage their quotas, on
//! a stopped server's data directory or, through its admin socket, on a
//! running one (changes take effect at once, no restart). Either way only
//! the server's user and root get in.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use eventi_server::admin::socket::{self, CallError};
use eventi_server::admin::{self, KeyCommand, KeyReport};
use eventi_server::keys::KeyRegistry;
use eventi_shared::size::{format_size, parse_rate, parse_size};
use eventi_store::{Store, StoreOptions};

/// Where the keys live.
#[derive(clap::Args)]
pub struct Args {
    /// Data directory of the server (running or stopped); before or
    /// after the subcommand.
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Authorize a public key (`eventi-ed25519 <hex> [comment]`, quoted) to write.
    Add {
        /// A name for the key's owner.
        name: String,
        /// The public key line the owner sent you.
        public_key: String,
        /// Most bytes of new blocks it may store, e.g. 20GiB.
        #[arg(long, value_parser = parse_size)]
        quota: u64,
        /// Most bytes per second it may send, e.g. 50MiB/s.
        #[arg(long, value_parser = parse_rate)]
        rate: Option<u64>,
    },
    /// List keys with their quotas and what they have stored.
    List {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change a key's quota.
    SetQuota {
        /// The key's name.
        name: String,
        /// The new quota, e.g. 50GiB.
        #[arg(value_parser = parse_size)]
        size: u64,
    },
    /// Withdraw a key: it can no longer write; what it stored stays.
    Remove {
        /// The key's name.
        name: String,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (cmd, json) = match args.command {
        Command::Add {
            name,
            public_key,
            quota,
            rate,
        } => (
            KeyCommand::Add {
                name,
                public: public_key,
                quota,
                rate,
            },
            false,
        ),
        Command::List { json } => (KeyCommand::List, json),
        Command::SetQuota { name, size } => (KeyCommand::SetQuota { name, quota: size }, false),
        Command::Remove { name } => (KeyCommand::Remove { name }, false),
    };
    // clap cannot require a global argument, so the check is here.
    let data = args
        .data
        .context("--data DIR is required (the server's data directory)")?;
    let reports = match socket::call(&data, &cmd) {
        Ok(reports) => reports,
        Err(CallError::NotRunning(_)) => offline(&data, &cmd)?,
        Err(e) => return Err(e.into()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print_table(&cmd, &reports);
    }
    Ok(ExitCode::SUCCESS)
}

fn offline(data: &Path, cmd: &KeyCommand) -> anyhow::Result<Vec<KeyReport>> {
    super::require_owner(data)?;
    let store = Store::open(data, &StoreOptions::default()).with_context(|| {
        format!(
            "opening {} (if a server runs on it, its admin socket {} did not answer)",
            data.display(),
            socket::socket_path(data).display()
        )
    })?;
    let keys = KeyRegistry::load(store.clone(), None)?;
    let result = admin::apply(&keys, cmd);
    store.shutdown().context("closing the store")?;
    Ok(result?)
}

fn print_table(cmd: &KeyCommand, reports: &[KeyReport]) {
    let verb = match cmd {
        KeyCommand::Add { .. } => "added",
        KeyCommand::SetQuota { .. } => "quota set",
        KeyCommand::Remove { .. } => "removed",
        KeyCommand::List => "",
    };
    if !verb.is_empty() {
        for r in reports {
            println!("{verb}: {} ({})", r.key.name, r.fingerprint);
        }
        return;
    }
    println!(
        "{:<20} {:<25} {:>12} {:>12} {:>10} {:>12} {:>12} LAST WRITE",
        "NAME", "FINGERPRINT", "QUOTA", "USED", "BLOCKS", "RECLAIMED", "RATE"
    );
    for r in reports {
        let rate = r
            .key
            .rate
            .map(|b| format!("{}/s", format_size(b)))
            .unwrap_or_else(|| "-".into());
        let last = if r.last_write == 0 {
            "never".to_string()
        } else {
            // --json keeps the seconds.
            format!(
                "{} UTC",
                eventi_shared::time::format_utc(r.last_write as i64)
            )
        };
        println!(
            "{:<20} {:<25} {:>12} {:>12} {:>10} {:>12} {:>12} {}",
            r.key.name,
            r.fingerprint,
            format_size(r.key.quota),
            format_size(r.used_bytes),
            r.used_blocks,
            format_size(r.reclaimed_bytes),
            rate,
            last
        );
    }
}
