//! `eventi restore SNAP[:PATH] TARGET`: files back from a snapshot.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use eventi::progress::{Counters, Reporter, Style};
use eventi::restore;

/// Options of `eventi restore`.
#[derive(clap::Args)]
pub struct Args {
    /// SNAP or SNAP:PATH; the whole snapshot goes into TARGET, a PATH
    /// under its own name.
    spec: String,
    /// The directory to restore into (created if missing).
    target: PathBuf,
    /// Replace files that exist and differ.
    #[arg(long)]
    overwrite: bool,
    /// Before skipping a file that is already there with the right size
    /// and mtime, compare its content with the snapshot (reads both).
    #[arg(long)]
    verify: bool,
    /// Print progress and the summary as JSON lines.
    #[arg(long)]
    json: bool,
    /// Worker threads (default: twice the cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Read the passphrase from this file.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (repo, snapshot, from, selected) =
        super::open_spec(&args.spec, args.passphrase_file.as_deref())?;
    let from = from.as_path();
    let counters = Arc::new(Counters::default());
    let reporter = Reporter::start(Arc::clone(&counters), Style::choose(args.json), "restore");
    let json = args.json;
    let warn = |p: &Path, what: &str| reporter.problem("error", p, what);
    let options = restore::Options {
        overwrite: args.overwrite,
        verify: args.verify,
        threads: args.threads.unwrap_or_else(restore::default_threads),
    };
    let started = std::time::Instant::now();
    let result = restore::run(
        repo.store().as_ref(),
        Some(snapshot.tree),
        selected,
        from,
        &args.target,
        &options,
        &counters,
        &warn,
    );
    reporter.finish();
    let summary = result?;
    repo.close()?;
    if json {
        let mut v = super::json_event("summary", &summary)?;
        v["seconds"] = started.elapsed().as_secs_f64().into();
        println!("{v}");
    } else {
        eprintln!(
            "restored {} files ({}), {} directories, {} other; {} already there{}; in {:.1} s",
            summary.files,
            super::human_bytes(summary.bytes),
            summary.dirs,
            summary.others,
            summary.skipped,
            if args.verify {
                format!(" ({} files compared)", summary.verified)
            } else {
                String::new()
            },
            started.elapsed().as_secs_f64()
        );
    }
    if summary.errors > 0 {
        eprintln!(
            "eventi: {} entries were not restored (see above)",
            summary.errors
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
