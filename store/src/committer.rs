//! Group commit without a hand-off: writes and syncs from every
//! connection go into one queue, and whichever connection finds the commit
//! lock free applies *everything* queued, its own jobs and other
//! connections' alike (a combining lock, as RocksDB's write groups).
//!
//! Under no contention a connection commits its own batch on its own
//! thread, with no wake-up of another thread; under contention one
//! connection commits for many. Syncs queued behind writes are passed, in
//! order, to one syncer thread, which serves every waiting sync with a
//! single `fdatasync`: a Tsync never blocks the async workers, and it is
//! answered only after every write queued before it has been applied.
//!
//! Every job's callback runs exactly once.

use std::collections::HashSet;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use crate::engine::Engine;
use crate::space::SpaceGuard;
use crate::{BlockKey, NewBlock, QuotaPolicy, StoreError, WriteLimit};

/// Bytes a new block costs on disk beyond its data (a log record's
/// header, its index entry, RocksDB's share), counted against the reserve.
const BLOCK_OVERHEAD: u64 = 128;

/// Called with `Ok(true)` for a new block, `Ok(false)` for one already stored.
pub type WriteDone = Box<dyn FnOnce(Result<bool, StoreError>) + Send>;
/// Called once the sync is done.
pub type SyncDone = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A unit of work for the committer.
pub enum Job {
    /// Store a block (if new).
    Write(NewBlock, WriteDone),
    /// Make every earlier write durable.
    Sync(SyncDone),
}

struct State {
    queue: Vec<Job>,
    closed: bool,
}

pub(super) struct Committer {
    engine: Arc<dyn Engine>,
    state: Mutex<State>,
    commit: Mutex<CommitScratch>,
    syncs: Mutex<Option<mpsc::Sender<SyncDone>>>,
    syncer: Mutex<Option<JoinHandle<()>>>,
    failed: Arc<Mutex<Option<String>>>,
    policy: std::sync::RwLock<Option<Arc<dyn QuotaPolicy>>>,
    space: SpaceGuard,
}

#[derive(Default)]
struct CommitScratch {
    seen: HashSet<BlockKey>,
}

impl Committer {
    pub fn new(engine: Arc<dyn Engine>, space: SpaceGuard) -> Committer {
        let (tx, rx) = mpsc::channel::<SyncDone>();
        let failed = Arc::new(Mutex::new(None));
        let syncer = {
            let engine = Arc::clone(&engine);
            let failed = Arc::clone(&failed);
            std::thread::Builder::new()
                .name("syncer".into())
                .spawn(move || run_syncer(engine, rx, failed))
                .expect("spawning the syncer thread")
        };
        Committer {
            engine,
            state: Mutex::new(State {
                queue: Vec::new(),
                closed: false,
            }),
            commit: Mutex::new(CommitScratch::default()),
            syncs: Mutex::new(Some(tx)),
            syncer: Mutex::new(Some(syncer)),
            failed,
            policy: std::sync::RwLock::new(None),
            space,
        }
    }

    pub fn set_policy(&self, policy: Arc<dyn QuotaPolicy>) {
        *self.policy.write().expect("policy lock") = Some(policy);
    }

    /// Queues jobs and, if no one else is committing, commits everything
    /// queued. Blocks only for the commit itself (a log append and an
    /// index batch), never for a sync.
    pub fn submit(&self, jobs: Vec<Job>) {
        {
            let mut st = self.state.lock().expect("committer state");
            if st.closed {
                drop(st);
                jobs.into_iter().for_each(refuse);
                return;
            }
            st.queue.extend(jobs);
        }
        loop {
            let Ok(mut scratch) = self.commit.try_lock() else {
                // The holder re-checks the queue after unlocking, so our
                // jobs cannot be stranded.
                return;
            };
            let batch = {
                let mut st = self.state.lock().expect("committer state");
                fair_share(&mut st.queue)
            };
            if !batch.is_empty() {
                self.apply(batch, &mut scratch);
            }
            drop(scratch);
            if self.state.lock().expect("committer state").queue.is_empty() {
                return;
            }
        }
    }

    fn apply(&self, batch: Vec<Job>, scratch: &mut CommitScratch) {
        let failed = self.failed.lock().expect("failed flag").clone();
        let policy = self.policy.read().expect("policy lock").clone();
        scratch.seen.clear();
        // Per writer in this batch: its limit and the bytes charged so far
        // (committed usage plus this batch), looked up once per writer.
        let mut charged: std::collections::HashMap<u32, (WriteLimit, u64)> =
            std::collections::HashMap::new();
        let mut new_blocks = Vec::new();
        // Blocks stored again: the writer holds them too.
        let mut again: Vec<(BlockKey, u32)> = Vec::new();
        let mut outcomes: Vec<Result<bool, StoreError>> = Vec::new();
        // Free space above the reserve, read once per batch when the
        // first new block needs it: (room left, free, reserve).
        let mut room: Option<Option<(u64, u64, u64)>> = None;
        let read_only = self.engine.index().read_only();
        for job in &batch {
            if let Job::Write(block, _) = job {
                let outcome = if let Some(reason) = &failed {
                    Err(StoreError::Failed(reason.clone()))
                } else if let Some(why) = read_only {
                    Err(StoreError::ReadOnly(why))
                } else if !scratch.seen.insert(block.key) {
                    again.push((block.key, block.writer));
                    Ok(false)
                } else {
                    match self.engine.contains(&block.key) {
                        // A block already stored charges nothing.
                        Ok(true) => {
                            again.push((block.key, block.writer));
                            Ok(false)
                        }
                        Ok(false) => {
                            let (limit, so_far) =
                                *charged.entry(block.writer).or_insert_with(|| {
                                    let limit = policy
                                        .as_ref()
                                        .map_or(WriteLimit::Unlimited, |p| p.limit(block.writer));
                                    (limit, self.engine.index().usage(block.writer).bytes)
                                });
                            let len = block.data.len() as u64;
                            let verdict = match limit {
                                WriteLimit::Unlimited => Ok(()),
                                WriteLimit::Refused(why) => Err(StoreError::WriteRefused(why)),
                                WriteLimit::Bytes(quota) if so_far + len <= quota => Ok(()),
                                WriteLimit::Bytes(_) => Err(StoreError::QuotaExceeded),
                            }
                            .and_then(|()| {
                                let room = room.get_or_insert_with(|| {
                                    self.space.now().map(|(space, reserve)| {
                                        (space.free.saturating_sub(reserve), space.free, reserve)
                                    })
                                });
                                match room {
                                    None => Ok(()),
                                    Some((left, _, _)) if *left >= len + BLOCK_OVERHEAD => {
                                        *left -= len + BLOCK_OVERHEAD;
                                        Ok(())
                                    }
                                    Some((_, free, reserve)) => Err(StoreError::DiskFull {
                                        free: *free,
                                        reserve: *reserve,
                                    }),
                                }
                            });
                            match verdict {
                                Ok(()) => {
                                    if let Some(entry) = charged.get_mut(&block.writer) {
                                        entry.1 += len;
                                    }
                                    new_blocks.push(block.clone());
                                    Ok(true)
                                }
                                Err(e) => {
                                    // Not stored: a later write of the same
                                    // block in this batch must be judged anew.
                                    scratch.seen.remove(&block.key);
                                    Err(e)
                                }
                            }
                        }
                        Err(e) => Err(e),
                    }
                };
                outcomes.push(outcome);
            }
        }
        let put_error = if new_blocks.is_empty() {
            None
        } else {
            self.engine.put_batch(&new_blocks).err().map(|e| {
                tracing::error!(error = %e, blocks = new_blocks.len(), "storing a batch failed");
                e.to_string()
            })
        };
        // A writer told its block is already there must hold it: a failure
        // here fails those writes, as a failed append fails new ones.
        let refs_error = self.engine.add_refs(&again).err().map(|e| {
            tracing::error!(error = %e, "recording the writers of stored blocks failed");
            e.to_string()
        });
        let mut outcomes = outcomes.into_iter();
        for job in batch {
            match job {
                Job::Write(_, done) => {
                    let mut outcome = outcomes.next().expect("one outcome per write");
                    if let (Ok(true), Some(reason)) = (&outcome, &put_error) {
                        outcome = Err(StoreError::Failed(reason.clone()));
                    }
                    if let (Ok(false), Some(reason)) = (&outcome, &refs_error) {
                        outcome = Err(StoreError::Failed(reason.clone()));
                    }
                    done(outcome);
                }
                // The writes before this sync have been applied above.
                Job::Sync(done) => self.forward_sync(done),
            }
        }
    }

    fn forward_sync(&self, done: SyncDone) {
        let tx = self.syncs.lock().expect("syncer channel").clone();
        match tx {
            Some(tx) => {
                if let Err(mpsc::SendError(done)) = tx.send(done) {
                    done(Err(StoreError::Closed));
                }
            }
            None => done(Err(StoreError::Closed)),
        }
    }

    /// Runs `f` with no commit in progress and none starting until it
    /// returns (prune and compaction steps), then commits what was queued
    /// meanwhile.
    pub fn exclusive<T>(&self, f: impl FnOnce() -> T) -> T {
        let out = {
            let _scratch = self.commit.lock().expect("commit lock");
            f()
        };
        // Writers that found the lock taken left their jobs queued.
        self.submit(Vec::new());
        out
    }

    /// Refuses new jobs, commits what is queued, and stops the syncer
    /// after it has served every sync sent to it.
    pub fn stop(&self) {
        let leftover = {
            let mut st = self.state.lock().expect("committer state");
            st.closed = true;
            std::mem::take(&mut st.queue)
        };
        if !leftover.is_empty() {
            let mut scratch = self.commit.lock().expect("commit lock");
            self.apply(leftover, &mut scratch);
        }
        // Wait for any committer in progress.
        drop(self.commit.lock().expect("commit lock"));
        self.syncs.lock().expect("syncer channel").take();
        if let Some(t) = self.syncer.lock().expect("syncer handle").take() {
            let _ = t.join();
        }
    }
}

/// Bytes one writer may put into a single commit. A writer with more
/// queued waits for the next round, so one key's flood cannot make every
/// other key's writes wait behind a multi-megabyte append.
const WRITER_SHARE: usize = 1 << 20;

/// Takes the next batch off the queue: every job in order, except that a
/// writer's writes beyond [`WRITER_SHARE`] stay queued, and so does every
/// sync after the first job left behind (a sync must follow the writes
/// queued before it).
fn fair_share(queue: &mut Vec<Job>) -> Vec<Job> {
    let total: usize = queue
        .iter()
        .map(|j| match j {
            Job::Write(b, _) => b.data.len(),
            Job::Sync(_) => 0,
        })
        .sum();
    if total <= WRITER_SHARE {
        return std::mem::take(queue);
    }
    let mut taken = Vec::with_capacity(queue.len());
    let mut left = Vec::new();
    let mut bytes: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for job in queue.drain(..) {
        let keep_back = match &job {
            Job::Write(b, _) => {
                let used = bytes.entry(b.writer).or_insert(0);
                if *used > 0 && *used + b.data.len() > WRITER_SHARE {
                    true
                } else {
                    *used += b.data.len();
                    false
                }
            }
            Job::Sync(_) => !left.is_empty(),
        };
        if keep_back {
            left.push(job);
        } else {
            taken.push(job);
        }
    }
    *queue = left;
    taken
}

fn refuse(job: Job) {
    match job {
        Job::Write(_, done) => done(Err(StoreError::Closed)),
        Job::Sync(done) => done(Err(StoreError::Closed)),
    }
}

fn run_syncer(
    engine: Arc<dyn Engine>,
    rx: mpsc::Receiver<SyncDone>,
    failed: Arc<Mutex<Option<String>>>,
) {
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        waiting.extend(rx.try_iter());
        let result = match failed.lock().expect("failed flag").clone() {
            Some(reason) => Err(reason),
            // Only these writers' blocks need sending again: no reason to
            // stop taking writes.
            None => match engine.sync() {
                Err(StoreError::SendAgain(reason)) => {
                    tracing::warn!(error = %reason, "sync refused: blocks must be sent again");
                    for done in waiting {
                        done(Err(StoreError::SendAgain(reason.clone())));
                    }
                    continue;
                }
                other => other.map_err(|e| e.to_string()),
            },
        };
        if let Err(reason) = &result {
            tracing::error!(error = %reason, "sync failed; refusing further writes");
            *failed.lock().expect("failed flag") = Some(reason.clone());
        }
        for done in waiting {
            done(result.clone().map_err(StoreError::Failed));
        }
    }
}
