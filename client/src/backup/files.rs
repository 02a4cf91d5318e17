//! The file workers: read, chunk, compress, seal and hand over the blocks
//! of one file at a time, several files at once.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};

use super::uploader::Uploader;
use rayon::prelude::*;

use crate::format::block::{self, Ref};
use crate::format::chunk;
use crate::format::tree::{BlockSink, TreeWriter};
use crate::fsmeta;
use crate::progress::Counters;

/// A file stored.
#[derive(Debug)]
pub struct FileDone {
    /// Its content tree.
    pub content: Ref,
    /// Bytes read.
    pub size: u64,
    /// Whether it changed while it was read (then it is not cached).
    pub changed: bool,
    /// Whether its last change is old enough to cache it: see [`SETTLE_NS`].
    pub settled: bool,
}

/// A file whose status changed less than this before its reading ended is
/// not cached. Timestamps advance in ticks (a few ms on ext4, whole seconds
/// on some filesystems): a write just after the read, in the same tick and
/// keeping the size, would leave inode, size, mtime and ctime as cached,
/// and every later backup would keep the stale content. Such a file is
/// read again next time instead, as git treats its "racily clean" entries.
pub const SETTLE_NS: i64 = 2_000_000_000;

/// A file to store; the outcome goes to `reply`.
struct Job {
    path: PathBuf,
    reply: Sender<std::io::Result<FileDone>>,
}

/// A pool of file workers.
pub struct Pool {
    jobs: Option<SyncSender<Job>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    /// Starts `threads` workers sealing under `convergence`.
    pub fn new(
        threads: usize,
        uploader: Arc<Uploader>,
        convergence: [u8; 32],
        counters: Arc<Counters>,
    ) -> Pool {
        let (tx, rx) = mpsc::sync_channel::<Job>(threads * 4);
        let seed = chunk::seed_for(&convergence);
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..threads)
            .map(|i| {
                let rx = Arc::clone(&rx);
                let uploader = Arc::clone(&uploader);
                let counters = Arc::clone(&counters);
                std::thread::Builder::new()
                    .name(format!("eventi-file-{i}"))
                    .spawn(move || loop {
                        let job = match rx.lock().expect("jobs").recv() {
                            Ok(j) => j,
                            Err(_) => return,
                        };
                        let r = if uploader.error().is_some() {
                            Err(std::io::Error::other("backup stopped"))
                        } else {
                            store_file(&job.path, &uploader, &convergence, seed, &counters)
                        };
                        let _ = job.reply.send(r);
                    })
                    .expect("spawn file worker")
            })
            .collect();
        Pool {
            jobs: Some(tx),
            threads,
        }
    }

    /// Queues a file; blocks while the queue is full.
    pub fn submit(&self, path: PathBuf) -> Receiver<std::io::Result<FileDone>> {
        let (reply, rx) = mpsc::channel();
        self.jobs
            .as_ref()
            .expect("pool running")
            .send(Job { path, reply })
            .expect("file workers alive");
        rx
    }

    /// Stops the workers after the queued jobs.
    pub fn finish(mut self) {
        self.jobs.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn open_noatime(path: &PathBuf) -> std::io::Result<File> {
    // O_NOATIME keeps backups from touching access times; only the owner
    // (or root) may ask for it, so fall back without it.
    match File::options()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path)
    {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => File::open(path),
        other => other,
    }
}

/// Chunks of one big file compressed and sealed together, in parallel: a
/// big file alone would otherwise keep one core busy and the other idle.
/// Smaller files stay on their worker (the handoffs cost more than they
/// win when many files keep all workers busy anyway).
const SEAL_BATCH: usize = 16;
/// Files from this size on are sealed in parallel batches.
const PARALLEL_FROM: u64 = 8 << 20;

/// Seals one file's chunks into its tree, `batch` chunks at a time.
struct FileSealer<'a> {
    uploader: &'a Uploader,
    convergence: &'a [u8; 32],
    counters: &'a Counters,
    tree: TreeWriter,
    pending: Vec<Vec<u8>>,
    batch: usize,
}

impl FileSealer<'_> {
    fn push(&mut self, chunk: Vec<u8>) {
        self.pending.push(chunk);
        if self.pending.len() >= self.batch {
            self.seal();
        }
    }

    fn seal(&mut self) {
        let convergence = self.convergence;
        let seal = |c: &Vec<u8>| block::seal(convergence, &chunk::pack(c));
        let sealed: Vec<_> = if self.pending.len() > 1 {
            self.pending.par_iter().map(seal).collect()
        } else {
            self.pending.iter().map(seal).collect()
        };
        for (c, (block, r)) in self.pending.drain(..).zip(sealed) {
            self.counters.bytes_done.fetch_add(c.len() as u64, Relaxed);
            self.uploader.put_block(r.score, block);
            self.tree.push(self.uploader, r, c.len());
        }
    }

    fn finish(mut self) -> Ref {
        self.seal();
        self.tree.finish(self.uploader)
    }
}

fn store_file(
    path: &PathBuf,
    uploader: &Uploader,
    convergence: &[u8; 32],
    seed: u64,
    counters: &Counters,
) -> std::io::Result<FileDone> {
    let file = open_noatime(path)?;
    let before = file.metadata()?;
    let batch = if before.len() >= PARALLEL_FROM {
        SEAL_BATCH
    } else {
        1
    };
    let mut sealer = FileSealer {
        uploader,
        convergence,
        counters,
        tree: TreeWriter::new(convergence),
        pending: Vec::with_capacity(batch),
        batch,
    };
    let mut size = 0u64;
    for c in chunk::chunks(&file, seed) {
        let c = c?;
        size += c.len() as u64;
        sealer.push(c);
    }
    let content = sealer.finish();
    let after = file.metadata()?;
    let changed = size != before.len()
        || after.len() != before.len()
        || after.mtime() != before.mtime()
        || after.mtime_nsec() != before.mtime_nsec();
    let last_change = fsmeta::ctime_ns(&after).max(fsmeta::mtime_ns(&after));
    let settled = last_change.saturating_add(SETTLE_NS) < fsmeta::now_ns();
    Ok(FileDone {
        content,
        size,
        changed,
        settled,
    })
}
