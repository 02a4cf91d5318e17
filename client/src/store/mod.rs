//! Where the client's blocks go: one small trait, a backend per kind of
//! store (`local`: the embedded store, the server's engine linked in;
//! `venti`: any venti server, authenticating with the write key when the
//! server offers it), `circle`: several stores as one with a number of
//! copies, `heads`: the signed snapshot head kept on the servers, and
//! `destination`, what a home knows about where its blocks go. Backup and restore speak only the trait and the circle.
//!
//! The trait is synchronous and object-safe because backup and restore
//! run on worker threads: `put` hands the block over and reports later
//! through a callback, so a worker never waits for a round trip, while
//! `get` and `sync` block.

pub mod circle;
pub mod destination;
pub mod heads;
pub mod local;
pub mod prune;
pub mod venti;

use std::sync::{Condvar, Mutex};

use bytes::Bytes;
use eventi_shared::{BlockType, Score};

/// Why a store operation failed; each names the block or store involved.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The store does not have the block.
    #[error("block {score} (type {}) is missing from {store}", block_type.to_wire())]
    Missing {
        /// Its score.
        score: Score,
        /// Its type.
        block_type: BlockType,
        /// Which store.
        store: String,
    },
    /// The store failed or refused.
    #[error("{store}: {message}")]
    Failed {
        /// Which store.
        store: String,
        /// What it said.
        message: String,
    },
    /// The store's copy of a block fails its SHA-256 check (a damaged
    /// disk, or a server that lies).
    #[error("block {score} on {store} is damaged: it fails its SHA-256 check")]
    Damaged {
        /// Its score.
        score: Score,
        /// Which store.
        store: String,
    },
    /// A circle member answered too slowly while others kept up: it is
    /// left behind for the rest of the backup.
    #[error("{store}: too slow: a write waited {seconds:.1} s (the circle's lag allows less)")]
    TooSlow {
        /// Which store.
        store: String,
        /// How long the write (or the wait for room to send it) took.
        seconds: f64,
    },
    /// Several stores of a [`circle::Circle`] failed, each its own way.
    #[error("{} stores failed: {}", .0.len(), join(.0))]
    Several(Vec<StoreError>),
    /// Fewer members of the circle than `copies` are up.
    #[error("only {up} server(s) of the circle are up and holding every block, but copies = {copies}: {}", .down.join("; "))]
    TooFewCopies {
        /// Copies asked for.
        copies: usize,
        /// Members still up.
        up: usize,
        /// Each member that is down, and why.
        down: Vec<String>,
    },
}

impl StoreError {
    /// What went wrong, without the store's name (for messages that name
    /// the store beside it).
    pub fn reason(&self) -> String {
        match self {
            StoreError::Failed { message, .. } => message.clone(),
            StoreError::TooSlow { seconds, .. } => {
                format!("too slow: a write waited {seconds:.1} s while the others kept up")
            }
            other => other.to_string(),
        }
    }
}

/// One error for the failures of several stores (one: itself).
pub(crate) fn combined(mut errors: Vec<StoreError>) -> StoreError {
    match errors.len() {
        1 => errors.pop().expect("one"),
        _ => StoreError::Several(errors),
    }
}

fn join(errors: &[StoreError]) -> String {
    let texts: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    texts.join("; ")
}

/// Called once when a `put` is stored (or failed).
pub type PutDone = Box<dyn FnOnce(Result<Score, StoreError>) + Send>;

/// A content-addressed block store, shared by worker threads.
pub trait BlockStore: Send + Sync {
    /// A name for messages (a path or `host:port`).
    fn name(&self) -> String;
    /// Hands a block over for storing (idempotently); `done` runs once
    /// with its score or the error. May block while too many puts are in
    /// flight, never for the put's own round trip.
    fn put(&self, block_type: BlockType, data: Bytes, done: PutDone);
    /// `put` of a block whose score the caller just computed from `data`
    /// itself, so a store may skip hashing it again.
    fn put_scored(&self, score: Score, block_type: BlockType, data: Bytes, done: PutDone) {
        let _ = score;
        self.put(block_type, data, done)
    }
    /// `put_scored` for a circle member that may be left behind when slow:
    /// waits at most `lag` for room among the puts in flight (giving
    /// `done` back, nothing queued, when there was none), and reports
    /// [`StoreError::TooSlow`] for a put whose reply took longer.
    fn put_within(
        &self,
        score: Score,
        block_type: BlockType,
        data: Bytes,
        done: PutDone,
        lag: std::time::Duration,
    ) -> Option<PutDone> {
        let _ = lag;
        self.put_scored(score, block_type, data, done);
        None
    }
    /// Reads a block, verified against its score. Blocking.
    fn get(&self, score: Score, block_type: BlockType) -> Result<Bytes, StoreError>;
    /// Reads a block that the caller checks itself against a stronger
    /// hash (every block a [`crate::format::block::Ref`] names: its SHA-256), so a
    /// store may skip re-hashing its SHA-1. Blocking.
    fn get_checked_by_caller(
        &self,
        score: Score,
        block_type: BlockType,
    ) -> Result<Bytes, StoreError> {
        self.get(score, block_type)
    }
    /// Reads a block whose SHA-256 must be `sha256` (every block a
    /// [`crate::format::block::Ref`] names); a copy that fails the check is
    /// [`StoreError::Damaged`], and a store of several tries the others.
    fn get_checked(
        &self,
        score: Score,
        block_type: BlockType,
        sha256: &[u8; 32],
    ) -> Result<Bytes, StoreError> {
        use sha2::Digest;
        let data = self.get_checked_by_caller(score, block_type)?;
        if sha2::Sha256::digest(&data)[..] != sha256[..] {
            return Err(StoreError::Damaged {
                score,
                store: self.name(),
            });
        }
        Ok(data)
    }
    /// Which of `keys` the store holds, without reading them; `None` when
    /// it cannot say (a plain venti server: the caller reads instead).
    /// Blocking.
    fn has(&self, keys: &[(Score, BlockType)]) -> Result<Option<Vec<bool>>, StoreError> {
        let _ = keys;
        Ok(None)
    }
    /// Returns once every block put before (whose `done` ran or not) is
    /// durable. Blocking.
    fn sync(&self) -> Result<(), StoreError>;
    /// The store's prune operations, where it has them.
    fn prunable(&self) -> Option<&dyn prune::Prunable> {
        None
    }
    /// Asks the store for the key's prune epoch now, and checks head sets
    /// against it from here on (`None`: the store does not prune): caches
    /// made in another epoch may name blocks that are gone.
    fn prune_epoch(&self) -> Option<u64> {
        None
    }
}

/// `put`, waiting for the outcome: for tests and one-off blocks.
pub fn put_wait(
    store: &dyn BlockStore,
    block_type: BlockType,
    data: Bytes,
) -> Result<Score, StoreError> {
    let (tx, rx) = std::sync::mpsc::channel();
    store.put(
        block_type,
        data,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv().unwrap_or_else(|_| {
        Err(StoreError::Failed {
            store: store.name(),
            message: "the store dropped a write".into(),
        })
    })
}

/// Counts operations in flight, bounding them and letting `sync` wait
/// for those that began before it: a checkpoint's sync must not wait for
/// the puts that other threads keep starting meanwhile, or it would wait
/// for as long as the backup runs.
#[derive(Debug)]
pub struct InFlight {
    state: Mutex<Epochs>,
    changed: Condvar,
    limit: usize,
}

/// Operations in flight, by the epoch they began in; a wait for earlier
/// operations starts a new epoch and waits for the older ones to drain.
#[derive(Debug, Default)]
struct Epochs {
    current: u64,
    total: usize,
    by_epoch: std::collections::BTreeMap<u64, usize>,
}

/// A slot taken by [`InFlight::acquire`]; give it back to [`InFlight::release`].
#[derive(Clone, Copy, Debug)]
pub struct Ticket(u64);

impl InFlight {
    /// At most `limit` at once.
    pub fn new(limit: usize) -> InFlight {
        InFlight {
            state: Mutex::new(Epochs::default()),
            changed: Condvar::new(),
            limit,
        }
    }

    /// Takes a slot, waiting while all are taken.
    pub fn acquire(&self) -> Ticket {
        let mut s = self.state.lock().expect("in-flight lock");
        while s.total >= self.limit {
            s = self.changed.wait(s).expect("in-flight lock");
        }
        s.total += 1;
        let epoch = s.current;
        *s.by_epoch.entry(epoch).or_insert(0) += 1;
        Ticket(epoch)
    }

    /// Takes a slot, waiting at most `wait` while all are taken.
    pub fn acquire_within(&self, wait: std::time::Duration) -> Option<Ticket> {
        let deadline = std::time::Instant::now() + wait;
        let mut s = self.state.lock().expect("in-flight lock");
        while s.total >= self.limit {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            s = self
                .changed
                .wait_timeout(s, left)
                .expect("in-flight lock")
                .0;
        }
        s.total += 1;
        let epoch = s.current;
        *s.by_epoch.entry(epoch).or_insert(0) += 1;
        Some(Ticket(epoch))
    }

    /// Gives a slot back.
    pub fn release(&self, ticket: Ticket) {
        let mut s = self.state.lock().expect("in-flight lock");
        s.total -= 1;
        if let Some(n) = s.by_epoch.get_mut(&ticket.0) {
            *n -= 1;
            if *n == 0 {
                s.by_epoch.remove(&ticket.0);
            }
        }
        self.changed.notify_all();
    }

    /// Waits until every operation that began before this call is done
    /// (those that begin meanwhile are not waited for).
    pub fn wait_for_earlier(&self) {
        let mut s = self.state.lock().expect("in-flight lock");
        let before = s.current;
        s.current += 1;
        while s.by_epoch.range(..=before).next().is_some() {
            s = self.changed.wait(s).expect("in-flight lock");
        }
    }

    /// Waits until nothing is in flight.
    pub fn wait_idle(&self) {
        let mut s = self.state.lock().expect("in-flight lock");
        while s.total > 0 {
            s = self.changed.wait(s).expect("in-flight lock");
        }
    }
}

#[cfg(test)]
mod in_flight_tests {
    use super::InFlight;

    #[test]
    fn a_wait_covers_only_what_began_before_it() {
        let f = std::sync::Arc::new(InFlight::new(8));
        let old = f.acquire();
        let waiter = {
            let f = std::sync::Arc::clone(&f);
            std::thread::spawn(move || f.wait_for_earlier())
        };
        // Let the waiter start its epoch, then begin a newer operation
        // that is never released before the wait must end.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let _newer = f.acquire();
        assert!(
            !waiter.is_finished(),
            "the older operation is still in flight"
        );
        f.release(old);
        waiter.join().unwrap();
    }
}
