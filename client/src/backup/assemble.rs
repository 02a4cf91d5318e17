//! The assembler: a thread that turns the walk's stream of events into
//! directory blocks. It waits for file workers' results in walk order,
//! so the walker never does: the walker can list and stat the next
//! directories (often waiting on the disk) while the workers still chew
//! on the files of the last ones.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::Receiver;

use super::files::FileDone;
use super::signature::Signature;
use super::uploader::Uploader;
use crate::format::block::Ref;
use crate::format::dirent::{self, Entry, Kind};
use crate::format::snapshot::Counts;
use crate::home::cache::{DirRecord, FileRecord};
use crate::progress::Counters;
use crate::stream;

/// An entry whose content may still be in the works.
pub enum Slot {
    /// Complete.
    Ready(Entry),
    /// A directory taken whole from its record, with what it holds.
    Reused(Entry, Counts),
    /// A file queued to the workers.
    File {
        /// The entry, without content yet.
        entry: Entry,
        /// Its absolute path.
        path: Vec<u8>,
        /// Its stat, for the cache.
        record: FileRecord,
        /// Where the worker answers.
        outcome: Receiver<std::io::Result<FileDone>>,
    },
}

/// What the walker tells the assembler, in walk order.
pub enum Event {
    /// A directory's entries follow.
    Open,
    /// An entry of the directory opened last.
    Slot(Slot),
    /// The directory opened last is complete; `entry` is its own entry,
    /// without content. `top` holds its path components if it was given
    /// on the command line.
    Close {
        /// The directory's entry.
        entry: Box<Entry>,
        /// Path components, for a top-level path.
        top: Option<Vec<Vec<u8>>>,
        /// Its path and signature, if it has one: then its listing is
        /// recorded in the cache, unless a file below it failed or is
        /// not cached.
        record: Option<(Vec<u8>, Signature)>,
    },
    /// A non-directory given on the command line.
    Top(Vec<Vec<u8>>, Slot),
}

/// What the assembler found wrong, besides what it reported.
#[derive(Default)]
pub struct Tally {
    /// Files that failed (counted as files by the walker).
    pub failed_files: AtomicU64,
    /// Files whose content was read and stored.
    pub read_files: AtomicU64,
    /// Their bytes.
    pub read_bytes: AtomicU64,
}

/// A directory being assembled.
#[derive(Default)]
struct Open {
    entries: Vec<Entry>,
    /// What it holds so far.
    counts: Counts,
    /// Whether everything below it was stored and cached: only then is
    /// its listing recorded.
    whole: bool,
}

impl Open {
    fn add(&mut self, (entry, counts, whole): (Entry, Counts, bool)) {
        self.counts += counts;
        self.whole &= whole;
        self.entries.push(entry);
    }
}

/// Runs until the walker hangs up; returns the top-level entries with
/// their path components (an empty path: the root directory's content).
pub fn run(
    events: Receiver<Event>,
    uploader: &Uploader,
    convergence: &[u8; 32],
    counters: &Counters,
    tally: &Tally,
    warn: &(dyn Fn(&Path, &str) + Sync),
) -> anyhow::Result<Vec<(Vec<Vec<u8>>, Entry)>> {
    let mut stack: Vec<Open> = Vec::new();
    let mut tops = Vec::new();
    for event in events {
        match event {
            Event::Open => stack.push(Open {
                whole: true,
                ..Open::default()
            }),
            Event::Slot(slot) => {
                if let Some(done) = resolve(slot, uploader, counters, tally, warn) {
                    stack.last_mut().expect("an open directory").add(done);
                } else {
                    stack.last_mut().expect("an open directory").whole = false;
                }
            }
            Event::Close {
                mut entry,
                top,
                record,
            } => {
                let Open {
                    mut entries,
                    mut counts,
                    whole,
                } = stack.pop().expect("an open directory");
                let stream = dirent::encode(&mut entries);
                drop(entries);
                let (r, _) = stream::write(uploader, convergence, &stream[..])
                    .expect("writing from memory cannot fail");
                entry.content = Some(r);
                counts.dirs += 1;
                if let (Some((path, signature)), true) = (record, whole) {
                    uploader.dir_stored(
                        &path,
                        &DirRecord {
                            signature,
                            content: r,
                            counts,
                        },
                    );
                }
                match top {
                    Some(components) => tops.push((components, *entry)),
                    None => stack
                        .last_mut()
                        .expect("a parent")
                        .add((*entry, counts, whole)),
                }
            }
            Event::Top(components, slot) => {
                if let Some((e, _, _)) = resolve(slot, uploader, counters, tally, warn) {
                    tops.push((components, e));
                }
            }
        }
        if let Some(e) = uploader.error() {
            anyhow::bail!("backup stopped: {e}");
        }
    }
    Ok(tops)
}

/// What one entry counts for.
fn counts_of(entry: &Entry) -> Counts {
    let mut c = Counts::default();
    match entry.kind {
        Kind::File => {
            c.files = 1;
            c.bytes = entry.size;
        }
        Kind::Symlink => c.symlinks = 1,
        Kind::Dir => c.dirs = 1,
        _ => c.others = 1,
    }
    c
}

/// The entry of a slot, what it counts for, and whether it is cached
/// (a file read now, but changed meanwhile or too recently, is not).
fn resolve(
    slot: Slot,
    uploader: &Uploader,
    counters: &Counters,
    tally: &Tally,
    warn: &(dyn Fn(&Path, &str) + Sync),
) -> Option<(Entry, Counts, bool)> {
    match slot {
        Slot::Ready(e) => {
            let c = counts_of(&e);
            Some((e, c, true))
        }
        Slot::Reused(e, c) => Some((e, c, true)),
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
                    tally.read_files.fetch_add(1, Relaxed);
                    tally.read_bytes.fetch_add(done.size, Relaxed);
                    counters.files_done.fetch_add(1, Relaxed);
                    let cached = !done.changed && done.settled;
                    if done.changed {
                        warn(p, "changed while it was read (stored as read; not cached)");
                    } else if done.settled {
                        record.content = done.content;
                        uploader.file_stored(&path, &record);
                    }
                    let c = counts_of(&entry);
                    Some((entry, c, cached))
                }
                Err(e) => {
                    tally.failed_files.fetch_add(1, Relaxed);
                    if uploader.error().is_none() {
                        counters.errors.fetch_add(1, Relaxed);
                        warn(p, &format!("not backed up: {e}"));
                    }
                    None
                }
            }
        }
    }
}

/// A placeholder reference for records whose content is not known yet.
pub const NO_REF: Ref = Ref {
    score: eventi_shared::Score::ZERO,
    key: [0; 32],
    check: [0; 32],
};
