//! `eventi-server keys`: authorize write keys and manage their quotas, on
//! a stopped server's data directory or, through its loopback HTTP admin
//! API, on a running one (changes take effect at once, no restart).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use eventi_server::admin::{self, KeyCommand, KeyReport};
use eventi_server::keys::KeyRegistry;
use eventi_server::size::{format_size, parse_rate, parse_size};
use eventi_server::store::{Store, StoreOptions};

/// Where the keys live.
#[derive(clap::Args)]
pub struct Args {
    /// Data directory of the server (running or stopped).
    #[arg(long)]
    data: PathBuf,
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

/// The file a running server writes with its HTTP address.
pub const ADMIN_ADDR_FILE: &str = "admin.addr";

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
    let reports = match running_server(&args.data) {
        Some(addr) => via_http(&addr, &cmd)?,
        None => offline(&args.data, &cmd)?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print_table(&cmd, &reports);
    }
    Ok(ExitCode::SUCCESS)
}

/// The admin address of a server running on `data`, if one answers.
fn running_server(data: &Path) -> Option<String> {
    let addr = std::fs::read_to_string(data.join(ADMIN_ADDR_FILE)).ok()?;
    let addr = addr.trim().to_string();
    // A file left by a crashed server names an address nobody answers.
    TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    Some(addr)
}

fn offline(data: &Path, cmd: &KeyCommand) -> anyhow::Result<Vec<KeyReport>> {
    let store = Store::open(data, &StoreOptions::default()).with_context(|| {
        format!(
            "opening {} (if a server runs on it, is its HTTP endpoint on?)",
            data.display()
        )
    })?;
    let keys = KeyRegistry::load(store.clone(), None)?;
    let result = admin::apply(&keys, cmd);
    store.shutdown().context("closing the store")?;
    Ok(result?)
}

fn via_http(addr: &str, cmd: &KeyCommand) -> anyhow::Result<Vec<KeyReport>> {
    let body = serde_json::to_string(cmd)?;
    let mut s = TcpStream::connect(addr)
        .with_context(|| format!("connecting to the server's admin endpoint {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "POST /admin/keys HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    let status: u16 = reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let text = reply.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    if status != 200 {
        bail!("server at {addr} refused: {}", text.trim());
    }
    serde_json::from_str(text).context("reading the server's answer")
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
        "{:<20} {:<25} {:>12} {:>12} {:>10} {:>12} LAST WRITE",
        "NAME", "FINGERPRINT", "QUOTA", "USED", "BLOCKS", "RATE"
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
            format!("{} (unix)", r.last_write)
        };
        println!(
            "{:<20} {:<25} {:>12} {:>12} {:>10} {:>12} {}",
            r.key.name,
            r.fingerprint,
            format_size(r.key.quota),
            format_size(r.used_bytes),
            r.used_blocks,
            rate,
            last
        );
    }
}
