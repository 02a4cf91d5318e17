//! `eventi restore`'s engine: recreate a snapshot's tree on disk.
//!
//! Files are written to a temporary name beside their destination and
//! renamed into place only when every block checked out, so a missing or
//! corrupt block leaves no partial file, only an error naming the path.
//! A file already present with the entry's size and mtime counts as
//! restored (that is what a finished restore leaves), so rerunning an
//! interrupted restore skips what is done; `--verify` also compares such
//! files' content with the snapshot, for when size and mtime are not
//! enough (after a power loss, or a tree of unknown history). Anything else
//! already present
//! is an error unless `--overwrite`. Directory modes and times are set
//! last, deepest first, so that writing into them does not undo them.

mod file;
mod links;
mod meta;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use crate::format::block::Ref;
use crate::format::dirent::{Entry, Kind};
use crate::progress::Counters;
use crate::store::{BlockStore, InFlight};
use crate::walk;

use file::restore_file;
pub use file::TEMP_PREFIX;
use links::restore_link;
use meta::{restore_special, set_metadata};

/// How to restore.
pub struct Options {
    /// Replace files that exist and differ.
    pub overwrite: bool,
    /// Compare files that look restored (right size and mtime) with the
    /// snapshot, byte for byte, before skipping them.
    pub verify: bool,
    /// Worker threads.
    pub threads: usize,
}

/// What a restore did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Summary {
    /// Files written.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks, hard links, devices, fifos.
    pub others: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Entries already present and correct.
    pub skipped: u64,
    /// Of those, files whose content was compared (`--verify`).
    pub verified: u64,
    /// Entries that could not be restored.
    pub errors: u64,
}

struct Ctx<'a> {
    store: &'a dyn BlockStore,
    /// The whole snapshot's tree, where hard links find a first name
    /// outside what is restored (none through a capability, which
    /// reaches nothing outside).
    tree: Option<Ref>,
    options: &'a Options,
    counters: &'a Counters,
    warn: &'a (dyn Fn(&Path, &str) + Sync),
    as_root: bool,
    in_flight: InFlight,
    /// Directories to finish, in post-order.
    dirs: Mutex<Vec<(PathBuf, Entry)>>,
    /// Hard links to make once all files exist.
    links: Mutex<Vec<(PathBuf, Entry)>>,
    /// The snapshot path restored, and where it goes.
    from: PathBuf,
    to: PathBuf,
    files: AtomicU64,
    dirs_done: AtomicU64,
    others: AtomicU64,
    bytes: AtomicU64,
    skipped: AtomicU64,
    verified: AtomicU64,
    errors: AtomicU64,
}

impl Ctx<'_> {
    fn error(&self, path: &Path, what: &str) {
        self.errors.fetch_add(1, Relaxed);
        self.counters.errors.fetch_add(1, Relaxed);
        (self.warn)(path, what);
    }
}

/// Restores `selected` (found at `from` in the snapshot whose tree is
/// `tree`, if known) into the directory `target`: the root's contents go
/// straight into it, anything else under its own name.
#[allow(clippy::too_many_arguments)]
pub fn run(
    store: &dyn BlockStore,
    tree: Option<Ref>,
    selected: Entry,
    from: &Path,
    target: &Path,
    options: &Options,
    counters: &Counters,
    warn: &(dyn Fn(&Path, &str) + Sync),
) -> anyhow::Result<Summary> {
    std::fs::create_dir_all(target)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", target.display()))?;
    let to = if selected.name.is_empty() {
        target.to_path_buf()
    } else {
        target.join(std::ffi::OsStr::from_bytes(&selected.name))
    };
    let ctx = Ctx {
        store,
        tree,
        options,
        counters,
        warn,
        // SAFETY: geteuid cannot fail.
        as_root: unsafe { libc::geteuid() } == 0,
        in_flight: InFlight::new(options.threads * 4),
        dirs: Mutex::new(Vec::new()),
        links: Mutex::new(Vec::new()),
        from: from.to_path_buf(),
        to: to.clone(),
        files: AtomicU64::new(0),
        dirs_done: AtomicU64::new(0),
        others: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        skipped: AtomicU64::new(0),
        verified: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.threads)
        .thread_name(|i| format!("eventi-restore-{i}"))
        .build()?;
    // The walk runs on this thread, outside the pool: it waits for
    // tickets that only the pool's threads give back (inside the pool, a
    // single worker would wait for itself).
    pool.in_place_scope(|scope| {
        let mut batch = Batch::default();
        restore_entry(&ctx, scope, &mut batch, selected, to.clone());
        batch.spawn(&ctx, scope);
    });
    for (dest, entry) in std::mem::take(&mut *ctx.links.lock().expect("links")) {
        restore_link(&ctx, &entry, &dest);
    }
    for (dest, entry) in std::mem::take(&mut *ctx.dirs.lock().expect("dirs")) {
        if let Err(e) = set_metadata(&ctx, &entry, &dest) {
            ctx.error(&dest, &format!("metadata not set: {e}"));
        }
    }
    Ok(Summary {
        files: ctx.files.load(Relaxed),
        dirs: ctx.dirs_done.load(Relaxed),
        others: ctx.others.load(Relaxed),
        bytes: ctx.bytes.load(Relaxed),
        skipped: ctx.skipped.load(Relaxed),
        verified: ctx.verified.load(Relaxed),
        errors: ctx.errors.load(Relaxed),
    })
}

/// Files handed to a worker as one job: small files are many, and a job
/// (a wakeup, a handoff) per file cost a tenth of a restore's CPU.
#[derive(Default)]
struct Batch {
    files: Vec<(Entry, PathBuf)>,
    bytes: u64,
}

/// A batch is handed over at this many bytes or files.
const BATCH_BYTES: u64 = 4 << 20;
const BATCH_FILES: usize = 64;

impl Batch {
    fn add<'s>(&mut self, ctx: &'s Ctx<'s>, scope: &rayon::Scope<'s>, entry: Entry, dest: PathBuf) {
        self.bytes += entry.size;
        self.files.push((entry, dest));
        if self.bytes >= BATCH_BYTES || self.files.len() >= BATCH_FILES {
            self.spawn(ctx, scope);
        }
    }

    fn spawn<'s>(&mut self, ctx: &'s Ctx<'s>, scope: &rayon::Scope<'s>) {
        if self.files.is_empty() {
            return;
        }
        let files = std::mem::take(&mut self.files);
        self.bytes = 0;
        let ticket = ctx.in_flight.acquire();
        scope.spawn(move |_| {
            for (entry, dest) in files {
                if let Err(e) = restore_file(ctx, &entry, &dest) {
                    ctx.error(&dest, &format!("not restored: {e}"));
                }
                ctx.counters.files_done.fetch_add(1, Relaxed);
            }
            ctx.in_flight.release(ticket);
        });
    }
}

fn restore_entry<'s>(
    ctx: &'s Ctx<'s>,
    scope: &rayon::Scope<'s>,
    batch: &mut Batch,
    entry: Entry,
    dest: PathBuf,
) {
    match entry.kind {
        Kind::Dir => restore_dir(ctx, scope, batch, entry, dest),
        Kind::File => {
            ctx.counters.files_seen.fetch_add(1, Relaxed);
            ctx.counters.bytes_seen.fetch_add(entry.size, Relaxed);
            batch.add(ctx, scope, entry, dest);
        }
        Kind::Hardlink => ctx.links.lock().expect("links").push((dest, entry)),
        Kind::Symlink | Kind::Fifo | Kind::CharDevice | Kind::BlockDevice => {
            match restore_special(ctx, &entry, &dest) {
                Ok(true) => {
                    ctx.others.fetch_add(1, Relaxed);
                }
                Ok(false) => {
                    ctx.skipped.fetch_add(1, Relaxed);
                }
                Err(e) => ctx.error(&dest, &format!("not restored: {e}")),
            }
        }
    }
}

fn restore_dir<'s>(
    ctx: &'s Ctx<'s>,
    scope: &rayon::Scope<'s>,
    batch: &mut Batch,
    entry: Entry,
    dest: PathBuf,
) {
    match std::fs::symlink_metadata(&dest) {
        Ok(m) if m.is_dir() => {}
        Ok(_) if ctx.options.overwrite => {
            if let Err(e) = std::fs::remove_file(&dest).and_then(|()| std::fs::create_dir(&dest)) {
                return ctx.error(&dest, &format!("not restored: {e}"));
            }
        }
        Ok(_) => {
            return ctx.error(&dest, "exists and is not a directory (use --overwrite)");
        }
        Err(_) => {
            if let Err(e) = std::fs::create_dir(&dest) {
                return ctx.error(&dest, &format!("not restored: {e}"));
            }
        }
    }
    let children = match walk::children(ctx.store, &entry) {
        Ok(c) => c,
        Err(e) => return ctx.error(&dest, &format!("contents not restored: {e:#}")),
    };
    for child in children {
        let path = dest.join(std::ffi::OsStr::from_bytes(&child.name));
        restore_entry(ctx, scope, batch, child, path);
    }
    ctx.dirs_done.fetch_add(1, Relaxed);
    // The snapshot's root has no metadata of its own: TARGET keeps its own.
    if !entry.name.is_empty() {
        ctx.dirs.lock().expect("dirs").push((dest, entry));
    }
}

/// The default number of restore threads: reads wait on the store, so
/// more threads than cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
}
