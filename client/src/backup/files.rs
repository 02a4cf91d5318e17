//! The file workers: read, chunk, compress, seal and hand over the blocks
//! of one file at a time, several files at once.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};

use super::uploader::Uploader;

use crate::format::block::Ref;
use crate::format::chunk;
use crate::format::tree::{put_leaf, BlockSink, Leaf, TreeWriter};
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

/// Files from this size on are read and sealed on every core at once
/// (see [`seal_overlapped`]); smaller ones stay on their worker, since the
/// handoffs cost more than they win when many files keep every worker
/// busy anyway.
const PARALLEL_FROM: u64 = 8 << 20;
/// Extents read ahead of the sealers, per sealer: enough that none waits
/// for the reader, few enough to bound memory (about 1 MiB per sealer).
const READ_AHEAD_PER_SEALER: usize = 4;

/// Packs and seals one extent, hands its blocks to the store and counts
/// it: the leaves that hold it.
fn seal_and_put(
    extent: &[u8],
    uploader: &impl BlockSink,
    convergence: &[u8; 32],
    counters: &Counters,
) -> Vec<Leaf> {
    let leaves = chunk::pack_extent(extent)
        .iter()
        .map(|packed| put_leaf(uploader, convergence, packed))
        .collect();
    counters.bytes_done.fetch_add(extent.len() as u64, Relaxed);
    leaves
}

/// One file's extents sealed in turn on the calling worker: its tree and
/// size.
fn seal_in_turn<E: AsRef<[u8]>>(
    extents: impl Iterator<Item = std::io::Result<E>>,
    uploader: &impl BlockSink,
    convergence: &[u8; 32],
    counters: &Counters,
) -> std::io::Result<(Ref, u64)> {
    let mut tree = TreeWriter::new(convergence);
    let mut size = 0u64;
    for e in extents {
        let e = e?;
        let e = e.as_ref();
        size += e.len() as u64;
        for leaf in seal_and_put(e, uploader, convergence, counters) {
            tree.push_leaf(uploader, leaf);
        }
    }
    Ok((tree.finish(uploader), size))
}

/// One big file's extents sealed by one thread per core while this one
/// reads and chunks ahead of them: reading, chunking, sealing and the
/// store's writes overlap, with no barrier between batches (sealing a batch
/// in parallel and then reading the next kept a core of two idle). The
/// sealers' pointers come back in any order and go into the tree in file
/// order.
fn seal_overlapped(
    extents: impl Iterator<Item = std::io::Result<Vec<u8>>>,
    uploader: &(impl BlockSink + Sync),
    convergence: &[u8; 32],
    counters: &Counters,
) -> std::io::Result<(Ref, u64)> {
    let sealers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (work, to_seal) = mpsc::sync_channel::<(u64, Vec<u8>)>(sealers * READ_AHEAD_PER_SEALER);
    let to_seal = Mutex::new(to_seal);
    let (sealed_tx, sealed) = mpsc::channel::<(u64, Vec<Leaf>)>();
    std::thread::scope(|scope| {
        for i in 0..sealers {
            let (to_seal, sealed_tx) = (&to_seal, sealed_tx.clone());
            std::thread::Builder::new()
                .name(format!("eventi-seal-{i}"))
                .spawn_scoped(scope, move || loop {
                    let Ok((index, extent)) = to_seal.lock().expect("extents").recv() else {
                        return;
                    };
                    let leaves = seal_and_put(&extent, uploader, convergence, counters);
                    if sealed_tx.send((index, leaves)).is_err() {
                        return;
                    }
                })
                .expect("spawn sealer");
        }
        drop(sealed_tx);
        let mut tree = TreeWriter::new(convergence);
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0u64;
        let mut in_order = |(index, leaves): (u64, Vec<Leaf>)| {
            waiting.insert(index, leaves);
            while let Some(leaves) = waiting.remove(&next) {
                for leaf in leaves {
                    tree.push_leaf(uploader, leaf);
                }
                next += 1;
            }
        };
        let mut size = 0u64;
        let mut failed = None;
        for (index, c) in (0u64..).zip(extents) {
            match c {
                Ok(c) => {
                    size += c.len() as u64;
                    work.send((index, c))
                        .expect("sealers run until the reader hangs up");
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            while let Ok(done) = sealed.try_recv() {
                in_order(done);
            }
        }
        drop(work); // The sealers end once the queue is empty.
        for done in sealed {
            in_order(done);
        }
        match failed {
            Some(e) => Err(e),
            None => Ok((tree.finish(uploader), size)),
        }
    })
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
    let (content, size) = if before.len() >= PARALLEL_FROM {
        seal_overlapped(chunk::extents(&file, seed), uploader, convergence, counters)?
    } else {
        // Read whole (at most PARALLEL_FROM, unless it grew meanwhile):
        // one read, and extents cut as slices of it.
        let mut data = Vec::with_capacity(before.len() as usize);
        std::io::Read::read_to_end(&mut &file, &mut data)?;
        let extents = chunk::extents_in_memory(&data, seed).map(Ok::<_, std::io::Error>);
        seal_in_turn(extents, uploader, convergence, counters)?
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use eventi_shared::Score;
    use std::collections::HashMap;

    /// Blocks kept in memory.
    #[derive(Default)]
    struct Memory(Mutex<HashMap<Score, Bytes>>);

    impl BlockSink for Memory {
        fn put_block(&self, score: Score, sealed: Bytes) {
            self.0.lock().unwrap().insert(score, sealed);
        }
    }

    #[test]
    fn sealing_in_parallel_gives_the_tree_of_sealing_in_turn() {
        let data = chunk::noise(20 << 20, 0x9e37_79b9_7f4a_7c15);
        let (convergence, seed) = ([3u8; 32], 17);
        let counters = Counters::default();
        let (one, many) = (Memory::default(), Memory::default());
        let in_turn = seal_in_turn(
            chunk::extents(&data[..], seed),
            &one,
            &convergence,
            &counters,
        )
        .unwrap();
        let overlapped = seal_overlapped(
            chunk::extents(&data[..], seed),
            &many,
            &convergence,
            &counters,
        )
        .unwrap();
        assert_eq!(in_turn.1, data.len() as u64);
        assert_eq!(overlapped.1, data.len() as u64);
        assert_eq!(
            in_turn.0, overlapped.0,
            "one tree, whatever the order of sealing"
        );
        let (one, many) = (one.0.into_inner().unwrap(), many.0.into_inner().unwrap());
        assert!(one.len() > 300, "{} blocks", one.len());
        assert_eq!(
            one.keys().collect::<std::collections::BTreeSet<_>>(),
            many.keys().collect::<std::collections::BTreeSet<_>>()
        );
    }

    #[test]
    fn a_read_error_midway_fails_the_file() {
        let data = chunk::noise(4 << 20, 0x9e37_79b9_7f4a_7c15);
        let chunks = chunk::extents(&data[..], 5)
            .take(8)
            .chain(std::iter::once(Err(std::io::Error::other("disk gone"))))
            .chain(chunk::extents(&data[..], 5).skip(8));
        let e = seal_overlapped(chunks, &Memory::default(), &[1; 32], &Counters::default())
            .unwrap_err();
        assert_eq!(e.to_string(), "disk gone");
    }
}
