//! `eventi backup PATH...`: a new snapshot; its root score is the last
//! line on stdout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use eventi::backup::exclude::Excluder;
use eventi::backup::{self, Options};
use eventi::home::Home;
use eventi::progress::{Counters, Reporter, Style};
use eventi::repo::{Access, Repo};

/// Options of `eventi backup`.
#[derive(clap::Args)]
pub struct Args {
    /// Files and directories to back up.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Leave out what matches (a name glob, or a path glob if it has a '/').
    #[arg(long = "exclude", value_name = "GLOB")]
    excludes: Vec<String>,
    /// Leave out the patterns listed in this file, one per line.
    #[arg(long = "exclude-file", value_name = "FILE")]
    exclude_files: Vec<PathBuf>,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Print progress and the summary as JSON lines on stdout.
    #[arg(long)]
    json: bool,
    /// Ignore the local cache: read every file and send every block.
    #[arg(long)]
    no_cache: bool,
    /// Sync the store and commit the cache after this much is sent, so an
    /// interrupted backup's rerun resends at most this much.
    #[arg(long, value_name = "SIZE", default_value = "512MiB", value_parser = eventi_shared::size::parse_size)]
    checkpoint: u64,
    /// File worker threads (default: four per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Read the passphrase from this file.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut excluder = Excluder::new(&args.excludes, &args.exclude_files)?;
    let home = Home::locate()?;
    for dir in home.dirs() {
        excluder.exclude_exactly(dir.to_path_buf());
    }
    let repo = if home.key_file().exists() {
        Repo::open(args.passphrase_file.as_deref(), Access::Write)?
    } else {
        eprintln!(
            "eventi: no key file yet: initializing {}",
            home.config.display()
        );
        let pass = super::init::new_passphrase(args.passphrase_file.as_deref())?;
        let public = super::init::create(&[], None, &pass)?;
        eprintln!("{public}");
        Repo::open_with(&pass, Access::Write)?
    };
    let options = Options {
        paths: args.paths,
        excluder: Arc::new(excluder),
        tags: args.tags,
        no_cache: args.no_cache,
        checkpoint_bytes: args.checkpoint.max(1),
        // Workers wait on the disk as much as they compute: more than cores.
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()) * 4),
    };
    let counters = Arc::new(Counters::default());
    let style = Style::choose(args.json);
    let reporter = Reporter::start(Arc::clone(&counters), style, "backup");
    let json = args.json;
    let warn = |path: &Path, what: &str| reporter.problem("warning", path, what);
    // What a rerun will not send again, as it becomes true.
    let checkpoint = |c: backup::uploader::Checkpoint| {
        if json {
            if let Ok(v) = super::json_event("checkpoint", &c) {
                println!("{v}");
            }
        }
    };
    let mut result = backup::run(&repo, &options, Arc::clone(&counters), &warn, &checkpoint);
    if let Some(e) = result
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<eventi::repo::PrunedDuringBackup>())
    {
        // The caches for that server are dropped at the start of the
        // second run (its epoch moved), so it sends what is gone.
        eprintln!("eventi: {e}; backing up again");
        result = backup::run(&repo, &options, counters, &warn, &checkpoint);
    }
    reporter.finish();
    let summary = result?;
    repo.close()?;
    if json {
        println!("{}", super::json_event("summary", &summary)?);
    } else {
        let c = &summary.counts;
        eprintln!(
            "{} files, {} directories, {} symlinks, {} other; {} in {:.1} s",
            c.files,
            c.dirs,
            c.symlinks,
            c.others,
            super::human_bytes(c.bytes),
            summary.seconds
        );
        eprintln!(
            "read {} files ({}); sent {} new blocks ({}); {} blocks were already stored; {} unchanged directories taken whole",
            summary.read_files,
            super::human_bytes(summary.read_bytes),
            summary.sent_blocks,
            super::human_bytes(summary.sent_bytes),
            summary.known_blocks,
            summary.reused_dirs
        );
        if c.errors > 0 {
            eprintln!(
                "eventi: {} entries could not be read and are not in the snapshot (see above)",
                c.errors
            );
        }
        println!("{}", summary.snapshot);
    }
    // 3: the snapshot was made but is incomplete.
    Ok(if summary.counts.errors > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}
