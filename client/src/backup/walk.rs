//! The walk: one thread visits the tree depth-first in name order (so the
//! result does not depend on timing), stats every entry, answers unchanged
//! files from the stat cache and queues the rest to the file workers. It
//! streams what it finds to the assembler (`assemble.rs`) and never waits
//! for a file's content.
//!
//! A directory whose signature (`signature.rs`), taken ahead of the walk,
//! matches its record in the cache is not entered: its recorded listing
//! goes to the assembler as one entry.

use std::collections::{HashMap, HashSet};
use std::fs::Metadata;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use super::assemble::{Event, Slot, NO_REF};
use super::files::{Pool, SETTLE_NS};
use super::signature::{self, Signature, Signer};
use super::uploader::Uploader;
use crate::backup::exclude::Excluder;
use crate::format::dirent::{Entry, Kind};
use crate::format::snapshot::Counts;
use crate::fsmeta::{self, Names};
use crate::home::cache::{DirRecord, FileRecord};
use crate::progress::Counters;

/// The walk stopped: the store failed, or the assembler is gone.
#[derive(Debug)]
pub struct Stopped;

/// What the walk may take from the cache instead of the disk.
pub struct Shortcuts {
    /// Whether unchanged files are taken from their records.
    pub use_cache: bool,
    /// Entries changed since this leave their directory unsigned.
    pub settled_before_ns: i64,
    /// Signatures taken ahead of the walk (`signature.rs`), by
    /// directory path: unchanged directories are taken from their records.
    pub signed: HashMap<Vec<u8>, Signature>,
}

impl Shortcuts {
    /// None at all (`--no-cache`): every file is read.
    pub fn none() -> Shortcuts {
        Shortcuts {
            use_cache: false,
            settled_before_ns: fsmeta::now_ns() - SETTLE_NS,
            signed: HashMap::new(),
        }
    }

    /// Every shortcut: signs those of `paths` that the cache has
    /// directory records under (signing the others could spare nothing);
    /// returns them and the paths left unsigned.
    pub fn take<'p>(
        paths: &'p [std::path::PathBuf],
        cache: &crate::home::cache::Cache,
        excluder: &Excluder,
    ) -> (Shortcuts, Vec<&'p Path>) {
        let settled_before_ns = fsmeta::now_ns() - SETTLE_NS;
        let (to_sign, unsigned): (Vec<&Path>, Vec<&Path>) =
            paths.iter().map(|p| p.as_path()).partition(|p| {
                std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
                    && cache
                        .has_dirs_under(p.as_os_str().as_bytes())
                        .unwrap_or(false)
            });
        let signed = if to_sign.is_empty() {
            HashMap::new()
        } else {
            signature::sign_trees(&to_sign, excluder, &Names::default(), settled_before_ns)
        };
        (
            Shortcuts {
                use_cache: true,
                settled_before_ns,
                signed,
            },
            unsigned,
        )
    }
}

/// See the module documentation.
pub struct Walker<'a> {
    uploader: Arc<Uploader>,
    pool: &'a Pool,
    use_cache: bool,
    excluder: &'a Excluder,
    counters: Arc<Counters>,
    warn: &'a (dyn Fn(&Path, &str) + Sync),
    events: SyncSender<Event>,
    /// What was found (files that later fail are subtracted by the caller).
    pub counts: Counts,
    names: Names,
    /// First path of each multiply-linked file, by (device, inode).
    hardlinks: HashMap<(u64, u64), Vec<u8>>,
    /// Entries changed since this leave their directory unsigned.
    settled_before_ns: i64,
    /// Signatures taken ahead of the walk, by directory path.
    signed: HashMap<Vec<u8>, Signature>,
    /// Directories taken whole from their records (nothing below them
    /// was visited).
    pub reused: HashSet<Vec<u8>>,
}

impl<'a> Walker<'a> {
    /// A walker that sends what it finds to `events`.
    pub fn new(
        uploader: Arc<Uploader>,
        pool: &'a Pool,
        excluder: &'a Excluder,
        counters: Arc<Counters>,
        warn: &'a (dyn Fn(&Path, &str) + Sync),
        events: SyncSender<Event>,
        shortcuts: Shortcuts,
    ) -> Walker<'a> {
        Walker {
            uploader,
            pool,
            use_cache: shortcuts.use_cache,
            excluder,
            counters,
            warn,
            events,
            counts: Counts::default(),
            names: Names::default(),
            hardlinks: HashMap::new(),
            settled_before_ns: shortcuts.settled_before_ns,
            signed: shortcuts.signed,
            reused: HashSet::new(),
        }
    }

    /// The record of the directory at `path` if its signature matches:
    /// then it is taken whole (counted, and recorded again for this
    /// generation).
    fn reusable(&mut self, path: &Path) -> Option<DirRecord> {
        let key = path.as_os_str().as_bytes();
        let signature = self.signed.get(key)?;
        let record = match self.uploader.cache().dir(key) {
            Ok(r) => r?,
            Err(e) => {
                (self.warn)(path, &e.to_string());
                return None;
            }
        };
        if record.signature != *signature {
            return None;
        }
        let c = record.counts;
        self.counts += c;
        for (counter, n) in [
            (&self.counters.files_seen, c.files),
            (&self.counters.files_done, c.files),
            (&self.counters.bytes_seen, c.bytes),
            (&self.counters.bytes_done, c.bytes),
        ] {
            counter.fetch_add(n, Relaxed);
        }
        self.uploader.dir_stored(key, &record);
        self.reused.insert(key.to_vec());
        Some(record)
    }

    fn send(&self, event: Event) -> Result<(), Stopped> {
        self.events.send(event).map_err(|_| Stopped)
    }

    fn error(&mut self, path: &Path, what: &str) {
        self.counts.errors += 1;
        self.counters.errors.fetch_add(1, Relaxed);
        (self.warn)(path, what);
    }

    fn base_entry(&self, path: &Path, name: Vec<u8>, meta: &Metadata) -> Entry {
        let xattrs = fsmeta::xattrs(path).unwrap_or_else(|e| {
            (self.warn)(path, &format!("extended attributes not read: {e}"));
            Vec::new()
        });
        Entry {
            kind: if meta.is_dir() { Kind::Dir } else { Kind::File },
            name,
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            user: self.names.user(meta.uid()),
            group: self.names.group(meta.gid()),
            mtime_ns: fsmeta::mtime_ns(meta),
            size: 0,
            rdev: 0,
            target: Vec::new(),
            content: None,
            xattrs,
            nlink: if meta.nlink() > 1 {
                u32::try_from(meta.nlink()).unwrap_or(u32::MAX)
            } else {
                0
            },
        }
    }

    /// Walks one path given on the command line (`components` from the root).
    pub fn top(&mut self, path: &Path, components: Vec<Vec<u8>>) -> Result<(), Stopped> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) => {
                self.error(path, &format!("not backed up: {e}"));
                return Ok(());
            }
        };
        let name = components.last().cloned().unwrap_or_default();
        if meta.is_dir() {
            let mut entry = self.base_entry(path, name, &meta);
            if let Some(record) = self.reusable(path) {
                entry.content = Some(record.content);
                return self.send(Event::Top(components, Slot::Reused(entry, record.counts)));
            }
            return self.dir(path, entry, Some(components)).map(|_| ());
        }
        if let Some(slot) = self.leaf(path, name, &meta) {
            self.send(Event::Top(components, slot))?;
        }
        Ok(())
    }

    /// Walks a directory: `Open`, its entries, `Close`. Nothing is sent if
    /// it cannot be listed (reported instead). Returns its signature, if
    /// it has one.
    fn dir(
        &mut self,
        path: &Path,
        entry: Entry,
        top: Option<Vec<Vec<u8>>>,
    ) -> Result<Option<Signature>, Stopped> {
        let names = match signature::kept_names(path, self.excluder) {
            Ok(n) => n,
            Err(e) => {
                self.error(path, &format!("directory not read: {e}"));
                return Ok(None);
            }
        };
        let mut signer = Signer::new(self.settled_before_ns);
        let (names, complete) = names;
        if !complete {
            self.error(path, "listing incomplete: some entries could not be read");
            signer.uncertain();
        }
        self.counts.dirs += 1;
        self.send(Event::Open)?;
        for name in names {
            let child = path.join(&name);
            let meta = match std::fs::symlink_metadata(&child) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // Gone meanwhile.
                Err(e) => {
                    self.error(&child, &format!("not backed up: {e}"));
                    signer.uncertain();
                    continue;
                }
            };
            let name = name.into_vec();
            if meta.is_dir() {
                let mut entry = self.base_entry(&child, name.clone(), &meta);
                let sub = if let Some(record) = self.reusable(&child) {
                    entry.content = Some(record.content);
                    self.send(Event::Slot(Slot::Reused(entry, record.counts)))?;
                    Some(record.signature)
                } else {
                    self.dir(&child, entry, None)?
                };
                signer.dir(&name, &meta, &self.names, sub.as_ref());
            } else {
                let errors = self.counts.errors;
                signer.entry(&name, &meta, &self.names);
                if let Some(slot) = self.leaf(&child, name, &meta) {
                    self.send(Event::Slot(slot))?;
                }
                if self.counts.errors != errors {
                    signer.uncertain();
                }
            }
            if self.uploader.error().is_some() {
                return Err(Stopped);
            }
        }
        let signature = signer.finish();
        self.send(Event::Close {
            entry: Box::new(entry),
            top,
            record: signature.map(|s| (path.as_os_str().as_bytes().to_vec(), s)),
        })?;
        Ok(signature)
    }

    /// The entry for anything but a directory, its content queued if it
    /// is a file that changed. `None` if it cannot be backed up (reported).
    fn leaf(&mut self, path: &Path, name: Vec<u8>, meta: &Metadata) -> Option<Slot> {
        let ft = meta.file_type();
        let mut entry = self.base_entry(path, name, meta);
        let path_bytes = path.as_os_str().as_bytes().to_vec();
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
        if meta.nlink() > 1 {
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
            return None; // Sockets: nothing to restore.
        }
        self.counts.files += 1;
        self.counters.files_seen.fetch_add(1, Relaxed);
        self.counters.bytes_seen.fetch_add(meta.len(), Relaxed);
        let record = FileRecord {
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: fsmeta::mtime_ns(meta),
            ctime_ns: fsmeta::ctime_ns(meta),
            content: NO_REF,
        };
        if self.use_cache {
            match self.uploader.cache().file(&path_bytes) {
                Ok(Some(old)) if old.matches(meta) => {
                    entry.size = old.size;
                    entry.content = Some(old.content);
                    self.counts.bytes += old.size;
                    self.counters.files_done.fetch_add(1, Relaxed);
                    self.counters.bytes_done.fetch_add(old.size, Relaxed);
                    // Recorded again so that this generation keeps it.
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
}
