//! `eventi repair`: copies to every server of the circle the blocks it
//! lacks, from a server that has them, and clears the recorded shortfalls.

use std::path::PathBuf;
use std::process::ExitCode;

use eventi::check;
use eventi::repo::{Access, Repo};
use eventi::store::heads::SetOutcome;

/// Options of `eventi repair`.
#[derive(clap::Args)]
pub struct Args {
    /// The snapshot to repair (default: latest).
    #[arg(conflicts_with = "all")]
    snapshot: Option<String>,
    /// Repair every snapshot of the chain (and clear every shortfall).
    #[arg(long)]
    all: bool,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
    /// The passphrase, from a file.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let repo = Repo::open(args.passphrase_file.as_deref(), Access::Repair)?;
    let roots = super::chosen_roots(&repo, args.snapshot.as_deref(), args.all)?;
    let circle = repo.destination.circle();
    let needed = check::blocks_of(&repo, &roots)?;
    let reports = check::check(circle, &needed, false, &|_| {});
    let missing: u64 = reports.iter().map(|r| r.missing.len() as u64).sum();
    let bar = super::bar(missing, args.json, "repairing");
    let repaired = check::repair(circle, &reports, &|n| {
        if let Some(b) = &bar {
            b.set_position(n)
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // Servers that missed a backup missed its head too.
    let mut heads_set = 0;
    if let (Some(heads), Some((root, seq))) = (repo.destination.heads(), repo.newest_head()?) {
        let key = repo.key.write();
        for (label, outcome) in heads.set(key.signing_key(), root, seq, &repo.up_labels()) {
            match outcome {
                SetOutcome::Set => heads_set += 1,
                SetOutcome::Stale(_) | SetOutcome::Unsupported => {}
                SetOutcome::Failed(e) => {
                    eprintln!("eventi: could not set the head on {label}: {e}")
                }
            }
        }
    }
    let mut book = repo.destination.shortfalls(&repo.home)?;
    for (r, report) in repaired.iter().zip(&reports) {
        if r.error.is_none() && report.error.is_none() {
            book.clear(&r.address, (!args.all).then_some(&roots[..]));
        }
    }
    book.save()?;
    let clean = repaired.iter().all(|r| r.error.is_none());
    if args.json {
        let v = serde_json::json!({
            "snapshots": roots.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            "blocks": needed.len(),
            "clean": clean,
            "heads_set": heads_set,
            "servers": repaired,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for r in &repaired {
            let label = super::member_label(&r.name, &r.address);
            match &r.error {
                Some(e) => println!(
                    "{label}: NOT REPAIRED ({} of {} missing blocks copied): {e}",
                    r.copied, r.missing
                ),
                None if r.missing == 0 => println!("{label}: nothing missing"),
                None => println!(
                    "{label}: copied {} blocks ({})",
                    r.copied,
                    super::human_bytes(r.copied_bytes)
                ),
            }
        }
    }
    repo.close()?;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
