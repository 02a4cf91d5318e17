//! `eventi snapshots`: the chain from the newest snapshot, newest first;
//! with `--all`, also the chain of each write-only machine the owner
//! exported a key to (found by its heads), each marked with its machine.

use std::path::PathBuf;
use std::process::ExitCode;

use eventi::repo::{Access, Repo, Signed};
use eventi_shared::public_key;

/// Options of `eventi snapshots`.
#[derive(clap::Args)]
pub struct Args {
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
    /// Also every write-only machine's chain (config.toml's `machines`).
    #[arg(long)]
    all: bool,
    /// Read the passphrase from this file.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let repo = Repo::open(args.passphrase_file.as_deref(), Access::Read)?;
    let mut chains = vec![(None, repo.signed_chain()?)];
    if args.all {
        for (name, chain) in repo.machine_chains()? {
            chains.push((Some(name), chain));
        }
    }
    let chain: Vec<(Option<String>, Signed)> = chains
        .into_iter()
        .flat_map(|(machine, chain)| chain.into_iter().map(move |s| (machine.clone(), s)))
        .collect();
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
            .map(|(machine, (score, s, signer))| {
                let mut v = serde_json::json!({
                    "machine": machine,
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
        for (machine, (score, s, signer)) in &chain {
            // Roots are sealed to a public key: anyone holding it (a
            // write-only machine) can add one. Say when it was not us.
            let foreign = if let Some(m) = machine {
                format!(" (machine {m})")
            } else if repo.is_own_key(signer) {
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
                super::display_paths(&s.paths)
            );
        }
    }
    repo.close()?;
    Ok(ExitCode::SUCCESS)
}
