//! `eventi prune`: tells every store of the circle which of the key's
//! blocks the kept snapshots (and this home's drops) still need, so that
//! each gives back the space of the rest (`eventi::prune`).

use std::path::PathBuf;
use std::process::ExitCode;

use eventi::prune::StoreReport;
use eventi::repo::{Access, Repo};
use eventi_shared::size::format_size;

/// Options of `eventi prune`.
#[derive(clap::Args)]
pub struct Args {
    /// Work out what would be marked on each store; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print a JSON object.
    #[arg(long)]
    json: bool,
    /// The passphrase, from a file.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    super::require_full_key("prune")?;
    let access = if args.dry_run {
        Access::Read
    } else {
        Access::Write
    };
    let repo = Repo::open(args.passphrase_file.as_deref(), access)?;
    let code = run_on(&repo, args.dry_run, args.json)?;
    repo.close()?;
    Ok(code)
}

/// Prunes through an open repo and prints the outcome (also `forget
/// --prune`). Exit status 1 when a store that can prune failed.
pub fn run_on(repo: &Repo, dry_run: bool, json: bool) -> anyhow::Result<ExitCode> {
    let reports = eventi::prune::prune(repo, dry_run)?;
    if json {
        let v = serde_json::json!({ "dry_run": dry_run, "stores": reports });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for r in &reports {
            print_report(r, dry_run);
        }
    }
    Ok(exit_code(&reports))
}

/// 1 when a store that can prune failed.
pub fn exit_code(reports: &[StoreReport]) -> ExitCode {
    if reports.iter().any(|r| r.error.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints what the prune did on one store.
pub fn print_report(r: &StoreReport, dry_run: bool) {
    let who = format!("{} ({})", r.name, r.address);
    if let Some(why) = &r.skipped {
        println!("{who}: {why}; nothing changed there");
        return;
    }
    if let Some(e) = &r.error {
        println!("{who}: prune failed: {e}");
        return;
    }
    if dry_run {
        println!(
            "{who}: would mark {} block(s) as still needed; the store would let go of the key's other blocks stored more than {} s ago (dry run: nothing changed)",
            r.marked, r.grace_secs
        );
        return;
    }
    let c = &r.committed;
    println!(
        "{who}: marked {} block(s); let go of {} reference(s): {} block(s) ({}) no key needs any more, {} block(s) ({}) another key still holds; epoch {} ({:.1} s reading the kept trees, {:.1} s marking, {:.1} s committing)",
        r.marked,
        c.released,
        c.dead_blocks,
        format_size(c.dead_bytes),
        c.moved_blocks,
        format_size(c.moved_bytes),
        c.epoch,
        r.walk_secs,
        r.mark_secs,
        r.commit_secs
    );
    if r.missing > 0 {
        println!(
            "  {} of the marked blocks are missing there: run `eventi repair`",
            r.missing
        );
    }
    match &r.compacted {
        Some(c) => println!(
            "  compacted: {} segment(s) removed, {} copied forward, {} given back to the filesystem",
            c.segments,
            format_size(c.bytes_copied),
            format_size(c.bytes_freed)
        ),
        None => println!("  the server gives the disk space back in the background (compaction)"),
    }
}
