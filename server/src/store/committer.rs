//! Group commit: one thread takes writes and syncs from every connection,
//! in arrival order, and applies them in batches.
//!
//! A batch is whatever is queued when the thread comes round (up to a byte
//! limit): duplicates are dropped (within the batch and against the
//! store), the new blocks go to the engine in one `put_batch`, and if any
//! sync is in the batch the engine syncs once for all of them. Because one
//! thread applies jobs in queue order, a sync covers every write queued
//! before it, from any connection.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use super::{BlockKey, Engine, NewBlock, StoreError};

/// Called on the committer thread with `Ok(true)` for a new block,
/// `Ok(false)` for one already stored.
pub type WriteDone = Box<dyn FnOnce(Result<bool, StoreError>) + Send>;
/// Called on the committer thread once the sync is done.
pub type SyncDone = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

enum Job {
    Write(NewBlock, WriteDone),
    Sync(SyncDone),
    Stop,
}

/// Jobs queued before writers wait; bounds the memory held in the queue.
const QUEUE_DEPTH: usize = 4096;

#[derive(Clone)]
pub(super) struct Handle {
    jobs: mpsc::Sender<Job>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
    stopping: Arc<AtomicBool>,
}

pub(super) fn spawn(engine: Arc<dyn Engine>, batch_max_bytes: usize) -> Handle {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let thread = std::thread::Builder::new()
        .name("committer".into())
        .spawn(move || run(engine, rx, batch_max_bytes))
        .expect("spawning the committer thread");
    Handle {
        jobs: tx,
        thread: Arc::new(Mutex::new(Some(thread))),
        stopping: Arc::new(AtomicBool::new(false)),
    }
}

impl Handle {
    pub async fn write(&self, block: NewBlock, done: WriteDone) {
        self.send(Job::Write(block, done)).await
    }

    pub async fn sync(&self, done: SyncDone) {
        self.send(Job::Sync(done)).await
    }

    /// Queues a job. If the store is closing, the job's callback runs
    /// here with [`StoreError::Closed`]: every callback runs exactly once.
    async fn send(&self, job: Job) {
        let job = if self.stopping.load(Ordering::Acquire) {
            job
        } else {
            match self.jobs.send(job).await {
                Ok(()) => return,
                Err(mpsc::error::SendError(job)) => job,
            }
        };
        match job {
            Job::Write(_, done) => done(Err(StoreError::Closed)),
            Job::Sync(done) => done(Err(StoreError::Closed)),
            Job::Stop => {}
        }
    }

    /// Lets the thread finish what is queued, then joins it. Jobs sent
    /// after this fail with [`StoreError::Closed`].
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        let thread = self.thread.lock().expect("committer handle").take();
        if let Some(thread) = thread {
            // A blocking send is fine: this runs outside the async runtime's
            // workers (shutdown path), and the thread is draining the queue.
            let _ = self.jobs.blocking_send(Job::Stop);
            let _ = thread.join();
        }
    }
}

fn run(engine: Arc<dyn Engine>, mut rx: mpsc::Receiver<Job>, batch_max_bytes: usize) {
    let mut failed: Option<String> = None;
    let mut jobs: Vec<Job> = Vec::new();
    let mut seen: HashSet<BlockKey> = HashSet::new();
    let mut stopping = false;
    while let Some(first) = rx.blocking_recv() {
        jobs.push(first);
        let mut bytes = 0usize;
        loop {
            if let Some(Job::Stop) = jobs.last() {
                jobs.pop();
                stopping = true;
                // No new jobs; those already queued are still applied.
                rx.close();
            }
            if bytes >= batch_max_bytes && !stopping {
                break;
            }
            match rx.try_recv() {
                Ok(job) => {
                    if let Job::Write(b, _) = &job {
                        bytes += b.data.len();
                    }
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        apply(&*engine, &mut jobs, &mut seen, &mut failed);
        if stopping {
            break;
        }
    }
}

fn apply(
    engine: &dyn Engine,
    jobs: &mut Vec<Job>,
    seen: &mut HashSet<BlockKey>,
    failed: &mut Option<String>,
) {
    seen.clear();
    let mut new_blocks = Vec::new();
    // For each write: whether its block is new in this batch.
    let mut outcomes: Vec<Result<bool, StoreError>> = Vec::new();
    let mut any_sync = false;
    for job in jobs.iter() {
        match job {
            Job::Write(block, _) => {
                let outcome = if let Some(reason) = failed {
                    Err(StoreError::Failed(reason.clone()))
                } else if !seen.insert(block.key) {
                    Ok(false)
                } else {
                    match engine.contains(&block.key) {
                        Ok(true) => Ok(false),
                        Ok(false) => {
                            new_blocks.push(block.clone());
                            Ok(true)
                        }
                        Err(e) => Err(e),
                    }
                };
                outcomes.push(outcome);
            }
            Job::Sync(_) => any_sync = true,
            Job::Stop => {}
        }
    }
    let put_error = if new_blocks.is_empty() {
        None
    } else {
        engine.put_batch(&new_blocks).err().map(|e| e.to_string())
    };
    let sync_result = if !any_sync {
        Ok(())
    } else if let Some(reason) = failed {
        Err(reason.clone())
    } else {
        engine.sync().map_err(|e| {
            let reason = e.to_string();
            tracing::error!(error = %reason, "sync failed; refusing further writes");
            *failed = Some(reason.clone());
            reason
        })
    };
    let mut outcomes = outcomes.into_iter();
    for job in jobs.drain(..) {
        match job {
            Job::Write(_, done) => {
                let mut outcome = outcomes.next().expect("one outcome per write");
                if let (Ok(true), Some(reason)) = (&outcome, &put_error) {
                    outcome = Err(StoreError::Failed(reason.clone()));
                }
                done(outcome);
            }
            Job::Sync(done) => done(sync_result.clone().map_err(StoreError::Failed)),
            Job::Stop => {}
        }
    }
}
