//! `eventi backup`'s engine: walk the paths, store their contents as
//! encrypted trees, and commit a snapshot root.
//!
//! The snapshot's tree mirrors absolute paths: backing up `/home/ada/src`
//! gives a tree `home/ada/src`. Directories above a given path are only
//! names (mode 0755, no owner, no time), so the tree reference depends on
//! what was backed up, not on unrelated changes to `/home`.
//!
//! `put` stores one path or a stream the same way, outside any snapshot.

mod assemble;
pub mod dry_run;
pub mod exclude;
mod files;
mod prefetch;
pub mod put;
mod signature;
pub mod uploader;
mod walk;

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use eventi_shared::Score;

use crate::backup::exclude::Excluder;
use crate::format::block::Ref;
use crate::format::dirent::{self, Entry};
use crate::format::snapshot::{Counts, Snapshot};
use crate::home::cache::Cache;
use crate::progress::Counters;
use crate::repo::Repo;
use crate::stream;
use uploader::Uploader;

/// What to back up and how.
pub struct Options {
    /// Paths given on the command line.
    pub paths: Vec<PathBuf>,
    /// What to leave out.
    pub excluder: Arc<Excluder>,
    /// Tags for the snapshot.
    pub tags: Vec<String>,
    /// Read every file and send every block, ignoring the cache.
    pub no_cache: bool,
    /// File worker threads.
    pub threads: usize,
    /// Bytes sent between syncs of the store and commits of the cache.
    pub checkpoint_bytes: u64,
}

/// What a backup did.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    /// The new snapshot's root score.
    pub snapshot: String,
    /// The score of its tree's root block (not a capability: no key).
    pub tree: String,
    /// What it holds.
    #[serde(flatten)]
    pub counts: Counts,
    /// Blocks sent to the store.
    pub sent_blocks: u64,
    /// Their bytes (compressed and encrypted).
    pub sent_bytes: u64,
    /// Blocks the store already had (by the sent-block record).
    pub known_blocks: u64,
    /// Files whose content was read (the others were unchanged, by the
    /// stat cache).
    pub read_files: u64,
    /// Their bytes.
    pub read_bytes: u64,
    /// Directories found unchanged by their signatures and taken whole
    /// from the cache (the outermost ones: nothing below them was
    /// visited).
    pub reused_dirs: u64,
    /// Wall time.
    pub seconds: f64,
    /// Servers of the circle that did not take every block (each was
    /// named when it went down; `eventi repair` fills them).
    pub short_on: Vec<String>,
}

/// Absolute, normalized (no `.`, `..` resolved lexically), sorted paths,
/// without any that lie inside another.
fn normalize(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        let abs = std::path::absolute(p).with_context(|| format!("path {}", p.display()))?;
        let mut clean = PathBuf::from("/");
        for c in abs.components() {
            match c {
                Component::Normal(n) => clean.push(n),
                Component::ParentDir => {
                    clean.pop();
                }
                _ => {}
            }
        }
        out.push(clean);
    }
    out.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    out.dedup();
    let mut kept: Vec<PathBuf> = Vec::new();
    for p in out {
        if !kept.iter().any(|k| p.starts_with(k)) {
            kept.push(p);
        }
    }
    Ok(kept)
}

/// Names above the backed-up paths.
#[derive(Default)]
struct Synthetic {
    children: BTreeMap<Vec<u8>, Node>,
}

enum Node {
    Entry(Box<Entry>),
    Dir(Synthetic),
}

impl Synthetic {
    fn insert(&mut self, components: &[Vec<u8>], entry: Entry) {
        match components {
            [] => unreachable!("a path has a name"),
            [last] => {
                self.children
                    .insert(last.clone(), Node::Entry(Box::new(entry)));
            }
            [first, rest @ ..] => {
                let node = self
                    .children
                    .entry(first.clone())
                    .or_insert_with(|| Node::Dir(Synthetic::default()));
                if let Node::Dir(d) = node {
                    d.insert(rest, entry);
                }
            }
        }
    }

    fn store(self, uploader: &Uploader, convergence: &[u8; 32]) -> Ref {
        let mut entries: Vec<Entry> = self
            .children
            .into_iter()
            .map(|(name, node)| match node {
                Node::Entry(e) => *e,
                Node::Dir(d) => Entry::bare_dir(name, d.store(uploader, convergence)),
            })
            .collect();
        let stream = dirent::encode(&mut entries);
        stream::write(uploader, convergence, &stream[..])
            .expect("writing to memory cannot fail")
            .0
    }
}

/// What storing some paths left: their top entries (path components
/// from `/`, and the entry with its content's reference), what was
/// counted, and the uploader whose blocks still need a flush.
struct Stored {
    tops: Vec<(Vec<Vec<u8>>, Entry)>,
    counts: Counts,
    /// Directories taken whole from their cache records.
    reused: std::collections::HashSet<Vec<u8>>,
    uploader: Arc<Uploader>,
    cache: Arc<Cache>,
    tally: assemble::Tally,
}

/// Walks `paths` (normalized) and stores their contents: the half of a
/// backup that a put shares.
fn store_paths(
    repo: &Repo,
    options: &Options,
    paths: &[PathBuf],
    counters: Arc<Counters>,
    warn: &(dyn Fn(&Path, &str) + Sync),
    checkpoint: &(dyn Fn(uploader::Checkpoint) + Sync),
) -> anyhow::Result<Stored> {
    for p in paths {
        std::fs::symlink_metadata(p).with_context(|| format!("cannot back up {}", p.display()))?;
    }
    let (uploader, cache) = open_uploader(repo, options)?;
    let convergence = *repo.key.write().convergence();
    let pool = files::Pool::new(
        options.threads,
        Arc::clone(&uploader),
        convergence,
        Arc::clone(&counters),
    );
    // Signing walks the signed trees ahead with threads of its own, so
    // only the others are prefetched.
    let (shortcuts, unsigned) = if options.no_cache {
        (
            walk::Shortcuts::none(),
            paths.iter().map(PathBuf::as_path).collect(),
        )
    } else {
        walk::Shortcuts::take(paths, &cache, &options.excluder)
    };
    let unsigned: Vec<PathBuf> = unsigned.into_iter().map(Path::to_path_buf).collect();
    let prefetch = prefetch::Prefetch::start(
        &unsigned,
        Arc::clone(&options.excluder),
        Arc::clone(&counters),
        4,
    );
    let (events, received) = std::sync::mpsc::sync_channel(4096);
    let tally = assemble::Tally::default();
    let stop_checkpoints = std::sync::atomic::AtomicBool::new(false);
    let (walked, assembled) = std::thread::scope(|scope| {
        let checkpointer = std::thread::Builder::new()
            .name("eventi-checkpoint".into())
            .spawn_scoped(scope, || {
                uploader.run_checkpoints(&stop_checkpoints, checkpoint)
            })
            .expect("spawn checkpointer");
        let assembler = std::thread::Builder::new()
            .name("eventi-assemble".into())
            .spawn_scoped(scope, || {
                assemble::run(received, &uploader, &convergence, &counters, &tally, warn)
            })
            .expect("spawn assembler");
        let mut walker = walk::Walker::new(
            Arc::clone(&uploader),
            &pool,
            &options.excluder,
            Arc::clone(&counters),
            warn,
            events,
            shortcuts,
        );
        let mut walked = Ok(());
        for p in paths {
            let components: Vec<Vec<u8>> = p
                .components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n.as_bytes().to_vec()),
                    _ => None,
                })
                .collect();
            walked = walker.top(p, components);
            if walked.is_err() {
                break;
            }
        }
        let counts = walker.counts;
        let reused = std::mem::take(&mut walker.reused);
        drop(walker); // Hangs up: the assembler finishes.
        let assembled = assembler.join().expect("assembler thread");
        stop_checkpoints.store(true, std::sync::atomic::Ordering::Relaxed);
        checkpointer.join().expect("checkpoint thread");
        (walked.map(|()| (counts, reused)), assembled)
    });
    drop(prefetch);
    pool.finish();
    if let Some(e) = uploader.error() {
        // Records what was stored before the failure (then fails itself).
        let _ = uploader.flush();
        bail!("backup stopped: {e}");
    }
    let tops = assembled?;
    let (mut counts, reused) = walked.map_err(|_| anyhow::anyhow!("backup stopped"))?;
    let failed = tally.failed_files.load(Relaxed);
    counts.files -= failed;
    counts.errors += failed;
    counts.bytes += tally.read_bytes.load(Relaxed);
    Ok(Stored {
        tops,
        counts,
        reused,
        uploader,
        cache,
        tally,
    })
}

/// The uploader to the repo's circle, with this destination's cache.
fn open_uploader(repo: &Repo, options: &Options) -> anyhow::Result<(Arc<Uploader>, Arc<Cache>)> {
    let cache_dir = repo.cache_dir()?;
    crate::home::create_private_dir(&cache_dir)?;
    let cache = Arc::new(Cache::open(&cache_dir)?);
    enter_epochs(repo, &cache)?;
    let uploader = Arc::new(Uploader::new(
        Arc::clone(repo.destination.circle()),
        Arc::clone(&cache),
        !options.no_cache,
        options.checkpoint_bytes,
    ));
    Ok((uploader, cache))
}

/// Drops what the cache knows of a member whose key was pruned since the
/// cache last saw it: the prune may have reclaimed blocks it names.
fn enter_epochs(repo: &Repo, cache: &Cache) -> anyhow::Result<()> {
    let circle = repo.destination.circle();
    for (index, member) in circle.members().iter().enumerate() {
        let Some(epoch) = circle.store_of(index).and_then(|s| s.prune_epoch()) else {
            continue;
        };
        if cache.enter_epoch(member.id, epoch)? {
            eprintln!(
                "eventi: {} was pruned since the last backup: every file is read again and its blocks are sent there again (those it still holds take no new space)",
                member.label()
            );
        }
    }
    Ok(())
}

/// Runs a backup; `warn` hears about every entry left out, `checkpoint`
/// about every checkpoint made durable.
pub fn run(
    repo: &Repo,
    options: &Options,
    counters: Arc<Counters>,
    warn: &(dyn Fn(&Path, &str) + Sync),
    checkpoint: &(dyn Fn(uploader::Checkpoint) + Sync),
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let time_ns = crate::fsmeta::now_ns();
    let paths = normalize(&options.paths)?;
    if paths.is_empty() {
        bail!("nothing to back up: give at least one path");
    }
    let parent = repo.head()?;
    let convergence = *repo.key.write().convergence();
    let Stored {
        tops,
        counts,
        reused,
        uploader,
        cache,
        tally,
    } = store_paths(repo, options, &paths, counters, warn, checkpoint)?;
    let mut top = Synthetic::default();
    let mut whole_root: Option<Ref> = None;
    for (components, entry) in tops {
        if components.is_empty() {
            whole_root = entry.content;
        } else {
            top.insert(&components, entry);
        }
    }
    let tree_ref = match whole_root {
        Some(r) => r,
        None => top.store(&uploader, &convergence),
    };
    checkpoint(uploader.flush().context("storing the backup's blocks")?);
    for p in &paths {
        cache.sweep(p.as_os_str().as_bytes(), &reused)?;
    }
    let snapshot = Snapshot {
        tree: tree_ref,
        parent,
        time_ns,
        host: crate::fsmeta::hostname(),
        paths: paths
            .iter()
            .map(|p| p.as_os_str().as_bytes().to_vec())
            .collect(),
        tags: options.tags.clone(),
        counts,
    };
    let root: Score = repo.commit_snapshot(&snapshot)?;
    let short_on = repo.destination.record_shortfalls(&repo.home, &root)?;
    Ok(Summary {
        short_on,
        snapshot: root.to_string(),
        tree: tree_ref.score.to_string(),
        counts,
        sent_blocks: uploader.sent_blocks.load(Relaxed),
        sent_bytes: uploader.sent_bytes.load(Relaxed),
        known_blocks: uploader.known_blocks.load(Relaxed),
        read_files: tally.read_files.load(Relaxed),
        read_bytes: tally.read_bytes.load(Relaxed),
        reused_dirs: reused.len() as u64,
        seconds: started.elapsed().as_secs_f64(),
    })
}
