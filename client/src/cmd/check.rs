//! `eventi check`: which blocks each server of the circle lacks (and with
//! `--read-data`, which of its copies are damaged) for a snapshot or all.

use std::process::ExitCode;

use eventi::check::{self, MemberReport};

/// Options of `eventi check`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    selection: super::Selection,
    /// Read every block from every server and check its SHA-256 and that
    /// it decrypts (instead of asking which blocks are there).
    #[arg(long)]
    read_data: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (repo, roots) = super::chosen_roots(&args.selection)?;
    let needed = check::blocks_of(&repo, &roots)?;
    let members = repo.destination.circle().members().len() as u64;
    let bar = super::bar(
        needed.len() as u64 * members,
        args.selection.json,
        "checking",
    );
    let reports = check::check(repo.destination.circle(), &needed, args.read_data, &|n| {
        if let Some(b) = &bar {
            b.set_position(n)
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let clean = reports.iter().all(MemberReport::is_clean);
    if args.selection.json {
        let v = serde_json::json!({
            "snapshots": roots.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            "blocks": needed.len(),
            "read_data": args.read_data,
            "clean": clean,
            "servers": reports,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} snapshot(s), {} blocks, {} server(s)",
            roots.len(),
            needed.len(),
            reports.len()
        );
        for r in &reports {
            println!("{}", describe(r));
        }
    }
    repo.close()?;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One line (and a few scores) about one server's check.
fn describe(r: &MemberReport) -> String {
    let label = eventi::store::circle::label(&r.name, &r.address);
    if let Some(e) = &r.error {
        return format!("{label}: NOT CHECKED: {e}");
    }
    let mut out = if r.missing.is_empty() {
        format!("{label}: all {} blocks present ({})", r.blocks, r.method)
    } else {
        format!(
            "{label}: MISSING {} of {} blocks ({}); `eventi repair` copies them from the others",
            r.missing.len(),
            r.blocks,
            r.method
        )
    };
    for (what, list) in [("missing", &r.missing), ("damaged", &r.damaged)] {
        if what == "damaged" && !list.is_empty() {
            out += &format!("\n{label}: DAMAGED {} block(s)", list.len());
        }
        for s in list.iter().take(10) {
            out += &format!("\n  {what} {s}");
        }
        if list.len() > 10 {
            out += &format!("\n  ... and {} more", list.len() - 10);
        }
    }
    out
}
