//! Metadata prefetch: a few threads walk the tree ahead of the walker,
//! listing directories and stat-ing entries only so that the kernel has
//! them cached when the walker (one thread, in name order) gets there.
//! On a cold cache this turns one long chain of disk waits into several
//! in parallel; an unchanged re-backup is mostly such waits.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};

use crate::backup::exclude::Excluder;
use crate::progress::Counters;

/// Running prefetch threads; they stop when dropped.
pub struct Prefetch {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

struct Queue {
    dirs: Mutex<Vec<PathBuf>>,
    ready: Condvar,
    busy: AtomicUsize,
}

impl Prefetch {
    /// Starts `threads` threads walking `roots`.
    /// Counts the files and bytes it finds in `counters` (for the ETA).
    pub fn start(
        roots: &[PathBuf],
        excluder: Arc<Excluder>,
        counters: Arc<Counters>,
        threads: usize,
    ) -> Prefetch {
        let stop = Arc::new(AtomicBool::new(false));
        let queue = Arc::new(Queue {
            dirs: Mutex::new(roots.iter().rev().cloned().collect()),
            ready: Condvar::new(),
            busy: AtomicUsize::new(0),
        });
        let threads = (0..threads)
            .map(|i| {
                let (stop, queue, excluder, counters) = (
                    Arc::clone(&stop),
                    Arc::clone(&queue),
                    Arc::clone(&excluder),
                    Arc::clone(&counters),
                );
                std::thread::Builder::new()
                    .name(format!("eventi-prefetch-{i}"))
                    .spawn(move || run(&stop, &queue, &excluder, &counters))
                    .expect("spawn prefetch")
            })
            .collect();
        Prefetch { stop, threads }
    }
}

fn run(stop: &AtomicBool, queue: &Queue, excluder: &Excluder, counters: &Counters) {
    loop {
        let dir = {
            let mut dirs = queue.dirs.lock().expect("prefetch queue");
            loop {
                if stop.load(Relaxed) {
                    return;
                }
                if let Some(d) = dirs.pop() {
                    queue.busy.fetch_add(1, Relaxed);
                    break d;
                }
                if queue.busy.load(Relaxed) == 0 {
                    return; // Nothing queued, nobody to queue more: done.
                }
                dirs = queue.ready.wait(dirs).expect("prefetch queue");
            }
        };
        let mut names: Vec<OsString> = match std::fs::read_dir(&dir) {
            Ok(items) => items
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let mut subdirs = Vec::new();
        for name in names {
            if stop.load(Relaxed) {
                break;
            }
            let child = dir.join(&name);
            if excluder.excludes(&child, &name) {
                continue;
            }
            if let Ok(m) = std::fs::symlink_metadata(&child) {
                if m.is_dir() {
                    subdirs.push(child);
                } else if m.is_file() {
                    counters.files_total.fetch_add(1, Relaxed);
                    // Each name of a hard-linked file carries its share,
                    // as the walk stores its content once.
                    counters
                        .bytes_total
                        .fetch_add(m.len() / m.nlink().max(1), Relaxed);
                }
            }
        }
        let mut dirs = queue.dirs.lock().expect("prefetch queue");
        dirs.extend(subdirs.into_iter().rev());
        queue.busy.fetch_sub(1, Relaxed);
        queue.ready.notify_all();
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
