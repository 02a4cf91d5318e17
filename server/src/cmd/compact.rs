//! `eventi-server compact --data DIR`: gives back, on a stopped server's
//! data directory, the space of blocks that prunes let go of (a running
//! server does the same in the background). Safe to interrupt at any
//! point: the next run carries on.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use eventi_shared::size::format_size;
use eventi_store::compact::CompactOptions;
use eventi_store::{Store, StoreOptions};

/// Which store to compact, and how far.
#[derive(clap::Args)]
pub struct Args {
    /// Data directory of a stopped server.
    #[arg(long)]
    data: PathBuf,
    /// Copy forward (and remove) segments whose live bytes are below this
    /// fraction; punch holes over the dead records of the others.
    #[arg(long, default_value_t = 0.3)]
    live_below: f64,
    /// Print a JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.data.is_dir(),
        "{}: no such data directory",
        args.data.display()
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.live_below),
        "--live-below must be between 0 and 1"
    );
    super::require_owner(&args.data)?;
    let store = Store::open(&args.data, &StoreOptions::default()).with_context(|| {
        format!(
            "opening {} (is a server still running on it?)",
            args.data.display()
        )
    })?;
    let options = CompactOptions {
        live_below: args.live_below,
        ..CompactOptions::default()
    };
    let report = store.compact(&options);
    let counters = store.space_counters();
    store.shutdown().context("closing the store")?;
    let report = report.context("compacting")?;
    let counters = counters?;
    if args.json {
        let v = serde_json::json!({
            "segments": report.segments,
            "removed": report.removed,
            "punched": report.punched,
            "blocks_copied": report.blocks_copied,
            "bytes_copied": report.bytes_copied,
            "bytes_freed": report.bytes_freed,
            "reclaimable_bytes": counters.reclaimable,
            "reclaimed_bytes": counters.reclaimed,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "compacted {} of {} segment(s), punched holes in {}: {} block(s) ({}) copied forward, {} given back; {} still reclaimable",
            report.removed,
            report.segments,
            report.punched,
            report.blocks_copied,
            format_size(report.bytes_copied),
            format_size(report.bytes_freed),
            format_size(counters.reclaimable)
        );
    }
    Ok(ExitCode::SUCCESS)
}
