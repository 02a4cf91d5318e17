//! `eventi backup [PATH...]`: a new snapshot of the paths given, or of
//! the config's `paths`; its root score is the last line on stdout. With
//! `--dry-run`, what it would read, and nothing stored.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use eventi::backup::dry_run;
use eventi::backup::exclude::Excluder;
use eventi::backup::{self, Options};
use eventi::home::cache::Cache;
use eventi::home::config::Config;
use eventi::home::Home;
use eventi::progress::{Counters, Reporter, Style};
use eventi::repo::{Access, Repo};

/// Options of `eventi backup`.
#[derive(clap::Args)]
pub struct Args {
    /// Files and directories to back up (default: `paths` in config.toml).
    paths: Vec<PathBuf>,
    /// List what would be read (`+`) or taken unchanged from the cache
    /// (`=`), with kind, size and path, and store nothing; needs no key or
    /// passphrase.
    #[arg(long)]
    dry_run: bool,
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

pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    let home = Home::locate()?;
    let config = Config::load(&home.config_file())?;
    if args.paths.is_empty() {
        if config.paths.is_empty() {
            anyhow::bail!(
                "nothing to back up: give paths, or list them as `paths` in {}",
                home.config_file().display()
            );
        }
        args.paths = config.paths.clone();
    }
    let mut patterns = config.exclude.clone();
    patterns.extend(args.excludes.iter().cloned());
    let mut excluder = Excluder::new(&patterns, &args.exclude_files)?;
    for dir in home.dirs() {
        excluder.exclude_exactly(dir.to_path_buf());
    }
    if args.dry_run {
        return dry_run(&args, &excluder, &home, &config);
    }
    let mut tags = config.tags.clone();
    tags.extend(args.tags.iter().cloned());
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
        tags,
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

/// Lists what a backup would do: `STATE KIND SIZE PATH` per entry on
/// stdout (STATE `+` a file to read, `=` a file the cache says is
/// unchanged, `-` not a file; KIND f file, d directory, l symlink, o
/// other), totals on stderr (as JSON with --json). Exit 3 if anything
/// could not be read, as a backup.
fn dry_run(
    args: &Args,
    excluder: &Excluder,
    home: &Home,
    config: &Config,
) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    let cache_dir = home
        .cache
        .join(eventi::store::destination::name_for(config));
    let cache = if args.no_cache {
        None
    } else {
        Cache::open_read_only(&cache_dir)?
    };
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let mut failed = None;
    let planned = dry_run::plan(
        &args.paths,
        excluder,
        cache.as_ref(),
        &mut dry_run::Report {
            each: &mut |path, meta, fate| {
                let state = match fate {
                    dry_run::Fate::Read => '+',
                    dry_run::Fate::Unchanged => '=',
                    dry_run::Fate::NotAFile => '-',
                };
                let kind = match meta.file_type() {
                    t if t.is_file() => 'f',
                    t if t.is_dir() => 'd',
                    t if t.is_symlink() => 'l',
                    _ => 'o',
                };
                let size = if meta.is_file() { meta.len() } else { 0 };
                let line = write!(out, "{state} {kind} {size} ")
                    .and_then(|()| out.write_all(path.as_os_str().as_bytes()))
                    .and_then(|()| out.write_all(b"\n"));
                if let Err(e) = line {
                    failed.get_or_insert(e);
                }
            },
            problem: &mut |path, e| eprintln!("eventi: {}: {e}", path.display()),
        },
    );
    out.flush()?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    if args.json {
        eprintln!("{}", super::json_event("dry-run", &planned)?);
    } else {
        eprintln!(
            "would read {} of {} files ({} of {}; {} unchanged since the last backup), walk {} directories and {} other entries; nothing was stored",
            planned.files - planned.unchanged_files,
            planned.files,
            super::human_bytes(planned.bytes - planned.unchanged_bytes),
            super::human_bytes(planned.bytes),
            planned.unchanged_files,
            planned.dirs,
            planned.others
        );
    }
    Ok(if planned.unreadable > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}
