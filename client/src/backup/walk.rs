//! The walk: one thread visits the tree depth-first in name order (so the
//! result does not depend on timing), stats every entry, answers unchanged
//! files from the stat cache and queues the rest to the file workers.
//! A directory is encoded once its files are stored, after its
//! subdirectories; memory holds only the directories on the current path.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use super::files::{FileDone, Pool};
use super::uploader::Uploader;
use crate::block::Ref;
use crate::cache::FileRecord;
use crate::dirent::{self, Entry, Kind};
use crate::exclude::{self, Excluder};
use crate::fsmeta::{self, Names};
use crate::progress::Counters;
use crate::snapshot::Counts;
use crate::tree;

/// An entry whose content may still be in the works.
enum Slot {
    Ready(Entry),
    File {
        entry: Entry,
        path: Vec<u8>,
        record: FileRecord,
        outcome: Receiver<std::io::Result<FileDone>>,
    },
}

/// See the module documentation.
pub struct Walker<'a> {
    /// Convergence secret.
    pub convergence: [u8; 32],
    /// Where blocks go.
    pub uploader: Arc<Uploader>,
    /// File workers.
    pub pool: &'a Pool,
    /// Whether to trust the stat cache.
    pub use_cache: bool,
    /// What to leave out.
    pub excluder: &'a Excluder,
    /// Progress.
    pub counters: Arc<Counters>,
    /// Where warnings go.
    pub warn: &'a dyn Fn(&Path, &str),
    /// What was backed up.
    pub counts: Counts,
    names: Names,
    /// First path of each multiply-linked file, by (device, inode).
    hardlinks: HashMap<(u64, u64), Vec<u8>>,
}

fn mtime_ns(m: &Metadata) -> i64 {
    m.mtime() * 1_000_000_000 + m.mtime_nsec()
}

fn ctime_ns(m: &Metadata) -> i64 {
    m.ctime() * 1_000_000_000 + m.ctime_nsec()
}

impl<'a> Walker<'a> {
    /// A walker; see the fields.
    pub fn new(
        convergence: [u8; 32],
        uploader: Arc<Uploader>,
        pool: &'a Pool,
        use_cache: bool,
        excluder: &'a Excluder,
        counters: Arc<Counters>,
        warn: &'a dyn Fn(&Path, &str),
    ) -> Walker<'a> {
        Walker {
            convergence,
            uploader,
            pool,
            use_cache,
            excluder,
            counters,
            warn,
            counts: Counts::default(),
            names: Names::default(),
            hardlinks: HashMap::new(),
        }
    }

    fn error(&mut self, path: &Path, what: &str) {
        self.counts.errors += 1;
        self.counters.errors.fetch_add(1, Relaxed);
        (self.warn)(path, what);
    }

    /// The entry for `path`, named `name`, with its content stored (or
    /// queued). `None` if it cannot be backed up (already reported).
    fn entry(&mut self, path: &Path, name: Vec<u8>, meta: &Metadata) -> Option<Slot> {
        let ft = meta.file_type();
        let xattrs = match fsmeta::xattrs(path) {
            Ok(x) => x,
            Err(e) => {
                (self.warn)(path, &format!("extended attributes not read: {e}"));
                Vec::new()
            }
        };
        let mut entry = Entry {
            kind: Kind::File,
            name,
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            user: self.names.user(meta.uid()),
            group: self.names.group(meta.gid()),
            mtime_ns: mtime_ns(meta),
            size: 0,
            rdev: 0,
            target: Vec::new(),
            content: None,
            xattrs,
        };
        let path_bytes = path.as_os_str().as_bytes().to_vec();
        if ft.is_dir() {
            entry.kind = Kind::Dir;
            self.counts.dirs += 1;
            match self.dir(path) {
                Ok(r) => entry.content = Some(r),
                Err(e) => {
                    self.counts.dirs -= 1;
                    self.error(path, &format!("directory not read: {e}"));
                    return None;
                }
            }
            return Some(Slot::Ready(entry));
        }
        if ft.is_symlink() {
            entry.kind = Kind::Symlink;
            match std::fs::read_link(path) {
                Ok(t) => entry.target = t.into_os_string().into_vec(),
                Err(e) => {
                    self.error(path, &format!("symlink not read: {e}"));
                    return None;
                }
            }
            self.counts.symlinks += 1;
            return Some(Slot::Ready(entry));
        }
        if meta.nlink() > 1 && !ft.is_dir() {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.hardlinks.get(&key) {
                entry.kind = Kind::Hardlink;
                entry.target = first.clone();
                entry.xattrs.clear();
                self.counts.others += 1;
                return Some(Slot::Ready(entry));
            }
            self.hardlinks.insert(key, path_bytes.clone());
        }
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            entry.kind = if ft.is_fifo() {
                Kind::Fifo
            } else if ft.is_char_device() {
                Kind::CharDevice
            } else {
                Kind::BlockDevice
            };
            entry.rdev = meta.rdev();
            self.counts.others += 1;
            return Some(Slot::Ready(entry));
        }
        if !ft.is_file() {
            // Sockets: nothing to restore.
            return None;
        }
        self.counts.files += 1;
        self.counters.files_seen.fetch_add(1, Relaxed);
        self.counters.bytes_seen.fetch_add(meta.len(), Relaxed);
        let record = FileRecord {
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: mtime_ns(meta),
            ctime_ns: ctime_ns(meta),
            content: Ref {
                score: eventi_shared::Score::ZERO,
                key: [0; 32],
                check: [0; 32],
            },
        };
        if self.use_cache {
            match self.uploader.cache().file(&path_bytes) {
                Ok(Some(old))
                    if old.ino == record.ino
                        && old.size == record.size
                        && old.mtime_ns == record.mtime_ns
                        && old.ctime_ns == record.ctime_ns =>
                {
                    entry.size = old.size;
                    entry.content = Some(old.content);
                    self.counts.bytes += old.size;
                    self.counters.files_done.fetch_add(1, Relaxed);
                    self.counters.bytes_done.fetch_add(old.size, Relaxed);
                    // Re-recorded so this generation keeps it.
                    self.uploader.file_stored(&path_bytes, &old);
                    return Some(Slot::Ready(entry));
                }
                Ok(_) => {}
                Err(e) => (self.warn)(path, &e.to_string()),
            }
        }
        let outcome = self.pool.submit(path.to_path_buf());
        Some(Slot::File {
            entry,
            path: path_bytes,
            record,
            outcome,
        })
    }

    fn resolve(&mut self, slot: Slot) -> Option<Entry> {
        match slot {
            Slot::Ready(e) => Some(e),
            Slot::File {
                mut entry,
                path,
                mut record,
                outcome,
            } => {
                let done = outcome
                    .recv()
                    .unwrap_or_else(|_| Err(std::io::Error::other("file worker lost")));
                let p = Path::new(std::ffi::OsStr::from_bytes(&path));
                match done {
                    Ok(done) => {
                        entry.size = done.size;
                        entry.content = Some(done.content);
                        self.counts.bytes += done.size;
                        self.counters.files_done.fetch_add(1, Relaxed);
                        if done.changed {
                            (self.warn)(
                                p,
                                "changed while it was read (stored as read; not cached)",
                            );
                        } else {
                            record.content = done.content;
                            self.uploader.file_stored(&path, &record);
                        }
                        Some(entry)
                    }
                    Err(e) => {
                        self.counts.files -= 1;
                        if self.uploader.error().is_none() {
                            self.error(p, &format!("not backed up: {e}"));
                        }
                        None
                    }
                }
            }
        }
    }

    /// Stores a directory's entries; returns its stream's tree.
    pub fn dir(&mut self, path: &Path) -> std::io::Result<Ref> {
        let mut names: Vec<OsString> = Vec::new();
        for item in std::fs::read_dir(path)? {
            match item {
                Ok(e) => names.push(e.file_name()),
                Err(e) => self.error(path, &format!("listing incomplete: {e}")),
            }
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let caches_only = exclude::is_cache_dir(path);
        let mut slots = Vec::with_capacity(names.len());
        for name in names {
            if caches_only && name != "CACHEDIR.TAG" {
                continue;
            }
            let child = path.join(&name);
            if self.excluder.excludes(&child, &name) {
                continue;
            }
            match std::fs::symlink_metadata(&child) {
                Ok(meta) => {
                    if let Some(slot) = self.entry(&child, name.into_vec(), &meta) {
                        slots.push(slot);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // Gone meanwhile.
                Err(e) => self.error(&child, &format!("not backed up: {e}")),
            }
            if self.uploader.should_flush() {
                if let Err(e) = self.uploader.flush() {
                    return Err(std::io::Error::other(e.to_string()));
                }
            }
            if let Some(e) = self.uploader.error() {
                return Err(std::io::Error::other(e));
            }
        }
        let mut entries: Vec<Entry> = Vec::with_capacity(slots.len());
        for slot in slots {
            if let Some(e) = self.resolve(slot) {
                entries.push(e);
            }
        }
        if let Some(e) = self.uploader.error() {
            return Err(std::io::Error::other(e));
        }
        let stream = dirent::encode(&mut entries);
        let (r, _) = tree::write(self.uploader.as_ref(), &self.convergence, &stream[..])
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(r)
    }

    /// The entry for one path given on the command line.
    pub fn top(&mut self, path: &Path) -> std::io::Result<Option<Entry>> {
        let meta = std::fs::symlink_metadata(path)?;
        let name = path
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_else(|| b"/".to_vec());
        let slot = self.entry(path, name, &meta);
        Ok(slot.and_then(|s| self.resolve(s)))
    }
}
