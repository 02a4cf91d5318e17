//! `eventi restore`'s engine: recreate a snapshot's tree on disk.
//!
//! Files are written to a temporary name beside their destination and
//! renamed into place only when every block checked out, so a missing or
//! corrupt block leaves no partial file, only an error naming the path.
//! A file already present with the entry's size and mtime counts as
//! restored (that is what a finished restore leaves), so rerunning an
//! interrupted restore skips what is done. Anything else already present
//! is an error unless `--overwrite`. Directory modes and times are set
//! last, deepest first, so that writing into them does not undo them.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::block::Ref;
use crate::browse;
use crate::dirent::{Entry, Kind};
use crate::fsmeta;
use crate::progress::Counters;
use crate::store::{BlockStore, InFlight};
use crate::tree;

/// How to restore.
pub struct Options {
    /// Replace files that exist and differ.
    pub overwrite: bool,
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
    /// Entries that could not be restored.
    pub errors: u64,
}

/// Blocks fetched in parallel per batch of a file.
const BATCH: usize = 64;

struct Ctx<'a> {
    store: &'a dyn BlockStore,
    tree: Ref,
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
/// `tree`) into the directory `target`: the root's contents go straight
/// into it, anything else under its own name.
#[allow(clippy::too_many_arguments)]
pub fn run(
    store: &dyn BlockStore,
    tree: Ref,
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
        errors: AtomicU64::new(0),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.threads)
        .thread_name(|i| format!("eventi-restore-{i}"))
        .build()?;
    pool.scope(|scope| {
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
        ctx.in_flight.acquire();
        scope.spawn(move |_| {
            for (entry, dest) in files {
                if let Err(e) = restore_file(ctx, &entry, &dest) {
                    ctx.error(&dest, &format!("not restored: {e}"));
                }
                ctx.counters.files_done.fetch_add(1, Relaxed);
            }
            ctx.in_flight.release();
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
    let Some(content) = entry.content else {
        return ctx.error(&dest, "directory entry without content");
    };
    let children = match browse::list(ctx.store, &content) {
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

/// The temporary name a file is written under before it is renamed into
/// place: fixed per name (a rerun reuses it) and short (names may already
/// be 255 bytes long).
fn temp_path(dest: &Path) -> PathBuf {
    use sha2::Digest;
    let name = dest.file_name().map(|n| n.as_bytes()).unwrap_or(b"");
    let digest = sha2::Sha256::digest(name);
    dest.with_file_name(format!("{TEMP_PREFIX}{}", hex::encode(&digest[..8])))
}

/// How temporary restore files start.
pub const TEMP_PREFIX: &str = ".eventi-restore-";

fn restore_file(ctx: &Ctx, entry: &Entry, dest: &Path) -> anyhow::Result<()> {
    if let Ok(m) = std::fs::symlink_metadata(dest) {
        if m.is_file() && m.len() == entry.size && fsmeta::mtime_ns(&m) == entry.mtime_ns {
            ctx.skipped.fetch_add(1, Relaxed);
            ctx.counters.bytes_done.fetch_add(entry.size, Relaxed);
            return Ok(());
        }
        if !ctx.options.overwrite {
            anyhow::bail!("exists and differs (use --overwrite)");
        }
    }
    let content = entry
        .content
        .ok_or_else(|| anyhow::anyhow!("file entry without content"))?;
    let tmp = temp_path(dest);
    let result = write_file(ctx, &content, entry, &tmp)
        .and_then(|()| set_metadata(ctx, entry, &tmp).map_err(Into::into))
        .and_then(|()| {
            if ctx.options.overwrite {
                if let Ok(m) = std::fs::symlink_metadata(dest) {
                    if m.is_dir() {
                        std::fs::remove_dir_all(dest)?;
                    }
                }
            }
            std::fs::rename(&tmp, dest)?;
            Ok(())
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    } else {
        ctx.files.fetch_add(1, Relaxed);
        ctx.bytes.fetch_add(entry.size, Relaxed);
    }
    result
}

fn write_file(ctx: &Ctx, content: &Ref, entry: &Entry, tmp: &Path) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)?;
    let mut offset = 0u64;
    let mut batch: Vec<(Ref, Option<Vec<u8>>)> = Vec::with_capacity(BATCH);
    let mut flush = |batch: &mut Vec<(Ref, Option<Vec<u8>>)>| -> anyhow::Result<()> {
        let chunks: Vec<Vec<u8>> = std::mem::take(batch)
            .into_par_iter()
            .map(|(r, data)| match data {
                Some(d) => Ok(d),
                None => tree::fetch_chunk(ctx.store, &r),
            })
            .collect::<Result<_, _>>()?;
        for c in chunks {
            // Runs of zeros stay holes: sparse files come back sparse.
            if c.iter().any(|b| *b != 0) {
                file.write_all_at(&c, offset)?;
            }
            offset += c.len() as u64;
            ctx.counters.bytes_done.fetch_add(c.len() as u64, Relaxed);
        }
        Ok(())
    };
    let mut failed: Option<anyhow::Error> = None;
    tree::for_each_leaf(ctx.store, content, &mut |r, data| {
        batch.push((r, data));
        if batch.len() == BATCH {
            if let Err(e) = flush(&mut batch) {
                failed = Some(e);
                return Err(tree::TreeError::Io(std::io::Error::other("stopped")));
            }
        }
        Ok(())
    })
    .map_err(|e| match failed.take() {
        Some(f) => f,
        None => e.into(),
    })?;
    flush(&mut batch)?;
    if offset != entry.size {
        anyhow::bail!(
            "content is {offset} bytes, the entry says {}: the snapshot is damaged",
            entry.size
        );
    }
    file.set_len(offset)?;
    Ok(())
}

fn owner(entry: &Entry) -> (u32, u32) {
    let uid = (!entry.user.is_empty())
        .then(|| fsmeta::uid_of(&entry.user))
        .flatten()
        .unwrap_or(entry.uid);
    let gid = (!entry.group.is_empty())
        .then(|| fsmeta::gid_of(&entry.group))
        .flatten()
        .unwrap_or(entry.gid);
    (uid, gid)
}

fn set_metadata(ctx: &Ctx, entry: &Entry, path: &Path) -> std::io::Result<()> {
    if ctx.as_root {
        let (uid, gid) = owner(entry);
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    }
    if entry.kind != Kind::Symlink {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(entry.mode & 0o7777))?;
    }
    for (name, value) in &entry.xattrs {
        if let Err(e) = fsmeta::set_xattr(path, name, value) {
            (ctx.warn)(
                path,
                &format!(
                    "extended attribute {} not set: {e}",
                    String::from_utf8_lossy(name)
                ),
            );
        }
    }
    fsmeta::set_mtime(path, entry.mtime_ns)
}

/// Symlinks, fifos and devices. `Ok(false)` if already there.
fn restore_special(ctx: &Ctx, entry: &Entry, dest: &Path) -> std::io::Result<bool> {
    if let Ok(m) = std::fs::symlink_metadata(dest) {
        let same = match entry.kind {
            Kind::Symlink => {
                m.file_type().is_symlink()
                    && std::fs::read_link(dest)?.as_os_str().as_bytes() == entry.target
            }
            _ => (m.mode() & libc::S_IFMT) == (entry.mode & libc::S_IFMT) && m.rdev() == entry.rdev,
        };
        if same {
            return Ok(false);
        }
        if !ctx.options.overwrite {
            return Err(std::io::Error::other(
                "exists and differs (use --overwrite)",
            ));
        }
        if m.is_dir() {
            std::fs::remove_dir_all(dest)?;
        } else {
            std::fs::remove_file(dest)?;
        }
    }
    match entry.kind {
        Kind::Symlink => {
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&entry.target), dest)?
        }
        _ => fsmeta::mknod(dest, entry.mode, entry.rdev)?,
    }
    set_metadata(ctx, entry, dest)?;
    Ok(true)
}

/// Where the file a hard link names was restored; `None` if outside.
fn link_source(ctx: &Ctx, target: &[u8]) -> Option<PathBuf> {
    let t = Path::new(std::ffi::OsStr::from_bytes(target));
    let rest = t.strip_prefix(&ctx.from).ok()?;
    Some(if rest.as_os_str().is_empty() {
        ctx.to.clone()
    } else {
        ctx.to.join(rest)
    })
}

fn restore_link(ctx: &Ctx, entry: &Entry, dest: &Path) {
    let result = (|| -> anyhow::Result<bool> {
        let Some(source) = link_source(ctx, &entry.target) else {
            // The first name is outside what is restored: copy the file.
            let t = Path::new(std::ffi::OsStr::from_bytes(&entry.target));
            let mut first = browse::lookup(ctx.store, ctx.tree, t)?;
            first.name = entry.name.clone();
            restore_file(ctx, &first, dest)?;
            return Ok(true);
        };
        let src = std::fs::symlink_metadata(&source)?;
        if let Ok(m) = std::fs::symlink_metadata(dest) {
            if m.ino() == src.ino() && m.dev() == src.dev() {
                return Ok(false);
            }
            if !ctx.options.overwrite {
                anyhow::bail!("exists and differs (use --overwrite)");
            }
            std::fs::remove_file(dest)?;
        }
        std::fs::hard_link(&source, dest)?;
        Ok(true)
    })();
    match result {
        Ok(true) => {
            ctx.others.fetch_add(1, Relaxed);
        }
        Ok(false) => {
            ctx.skipped.fetch_add(1, Relaxed);
        }
        Err(e) => ctx.error(dest, &format!("hard link not restored: {e:#}")),
    }
}

/// The default number of restore threads: reads wait on the store, so
/// more threads than cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
}
