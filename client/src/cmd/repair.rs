//! `eventi repair`: copies to every server of the circle the blocks it
//! lacks, from a server that has them, and clears the recorded shortfalls.

use std::process::ExitCode;

use eventi::check;
use eventi::store::heads::SetOutcome;

/// Options of `eventi repair`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    selection: super::Selection,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (repo, mut roots) = super::chosen_roots(&args.selection)?;
    if !args.selection.all {
        // The head set below may lead through a history record (forget's):
        // a server lacking it could not walk the chain.
        for (record, _) in repo.walk_chain(repo.head()?)?.records {
            roots.push(record);
        }
    }
    let circle = repo.destination.circle();
    let needed = check::blocks_of(&repo, &roots)?;
    let reports = check::check(circle, &needed, false, &|_| {});
    let missing: u64 = reports.iter().map(|r| r.missing.len() as u64).sum();
    let bar = super::bar(missing, args.selection.json, "repairing");
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
                SetOutcome::Failed(e) | SetOutcome::Pruned(e) => {
                    eprintln!("eventi: could not set the head on {label}: {e}")
                }
            }
        }
    }
    let mut book = repo.destination.shortfalls(&repo.home)?;
    for (r, report) in repaired.iter().zip(&reports) {
        if r.error.is_none() && report.error.is_none() {
            book.clear(&r.address, (!args.selection.all).then_some(&roots[..]));
        }
    }
    book.save()?;
    let clean = repaired.iter().all(|r| r.error.is_none());
    if args.selection.json {
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
            let label = eventi::store::circle::label(&r.name, &r.address);
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
