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
use super::uploader::Uploader;
use crate::format::block::Ref;
use crate::format::dirent::{self, Entry};
use crate::home::cache::FileRecord;
use crate::progress::Counters;
use crate::stream;

/// An entry whose content may still be in the works.
pub enum Slot {
    /// Complete.
    Ready(Entry),
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
    let mut stack: Vec<Vec<Entry>> = Vec::new();
    let mut tops = Vec::new();
    for event in events {
        match event {
            Event::Open => stack.push(Vec::new()),
            Event::Slot(slot) => {
                if let Some(e) = resolve(slot, uploader, counters, tally, warn) {
                    stack.last_mut().expect("an open directory").push(e);
                }
            }
            Event::Close { mut entry, top } => {
                let mut entries = stack.pop().expect("an open directory");
                let stream = dirent::encode(&mut entries);
                drop(entries);
                let (r, _) = stream::write(uploader, convergence, &stream[..])
                    .expect("writing from memory cannot fail");
                entry.content = Some(r);
                match top {
                    Some(components) => tops.push((components, *entry)),
                    None => stack.last_mut().expect("a parent").push(*entry),
                }
            }
            Event::Top(components, slot) => {
                if let Some(e) = resolve(slot, uploader, counters, tally, warn) {
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

fn resolve(
    slot: Slot,
    uploader: &Uploader,
    counters: &Counters,
    tally: &Tally,
    warn: &(dyn Fn(&Path, &str) + Sync),
) -> Option<Entry> {
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
                    tally.read_files.fetch_add(1, Relaxed);
                    tally.read_bytes.fetch_add(done.size, Relaxed);
                    counters.files_done.fetch_add(1, Relaxed);
                    if done.changed {
                        warn(p, "changed while it was read (stored as read; not cached)");
                    } else if done.settled {
                        record.content = done.content;
                        uploader.file_stored(&path, &record);
                    }
                    Some(entry)
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
