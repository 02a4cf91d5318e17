//! `eventi snapshots`: the chain from the newest snapshot, newest first.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;

use eventi::repo::{Access, Repo};
use eventi_shared::public_key;

/// Options of `eventi snapshots`.
#[derive(clap::Args)]
pub struct Args {
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
    /// Read the passphrase from this file.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let repo = Repo::open(args.passphrase_file.as_deref(), Access::Read)?;
    let chain = repo.signed_chain()?;
    let book = repo.destination.shortfalls(&repo.home)?;
    let names = repo.server_names();
    let short_on = |score| -> Vec<(String, String)> {
        book.short_on(score)
            .into_iter()
            .map(|(address, why)| {
                let name = names.get(&address).cloned().unwrap_or(address);
                (name, why)
            })
            .collect()
    };
    if args.json {
        let list: Vec<serde_json::Value> = chain
            .iter()
            .map(|(score, s, signer)| {
                let mut v = serde_json::json!({
                    "signer": public_key::format(signer.as_bytes(), ""),
                    "own_key": repo.is_own_key(signer),
                    "snapshot": score.to_string(),
                    "tree": s.tree.score.to_string(),
                    "parent": s.parent.map(|p| p.to_string()),
                    "time": super::format_time(s.time_ns),
                    "time_ns": s.time_ns,
                    "host": s.host,
                    "paths": s.paths.iter().map(|p| String::from_utf8_lossy(p)).collect::<Vec<_>>(),
                    "tags": s.tags,
                });
                v["counts"] = serde_json::to_value(s.counts).expect("counts");
                v["short_on"] = short_on(score)
                    .into_iter()
                    .map(|(server, why)| serde_json::json!({"server": server, "why": why}))
                    .collect();
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        for (score, s, signer) in &chain {
            let paths: Vec<String> = s
                .paths
                .iter()
                .map(|p| {
                    std::path::Path::new(std::ffi::OsStr::from_bytes(p))
                        .display()
                        .to_string()
                })
                .collect();
            // Roots are sealed to a public key: anyone holding it (a
            // write-only machine) can add one. Say when it was not us.
            let foreign = if repo.is_own_key(signer) {
                String::new()
            } else {
                format!(" (signed by {})", public_key::format(signer.as_bytes(), ""))
            };
            let tags = if s.tags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", s.tags.join(","))
            };
            let short: Vec<String> = short_on(score).into_iter().map(|(n, _)| n).collect();
            let short = if short.is_empty() {
                String::new()
            } else {
                format!("  (short on {}: run `eventi repair`)", short.join(", "))
            };
            println!(
                "{score}  {}  {}  {} files  {}{tags}  {}{foreign}{short}",
                super::format_time(s.time_ns),
                s.host,
                s.counts.files,
                super::human_bytes(s.counts.bytes),
                paths.join(" ")
            );
        }
    }
    repo.close()?;
    Ok(ExitCode::SUCCESS)
}
