//! Where the client's blocks go: one small trait, a backend per kind of
//! store (`local`: the embedded store, the server's engine linked in;
//! `venti`: any venti server, authenticating with the write key when the
//! server offers it; `multi`: several stores at once). Backup and restore
//! speak only this trait.
//!
//! The trait is synchronous and object-safe because backup and restore
//! run on worker threads: `put` hands the block over and reports later
//! through a callback, so a worker never waits for a round trip, while
//! `get` and `sync` block.

pub mod local;
pub mod multi;
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
    /// Reads a block, verified against its score. Blocking.
    fn get(&self, score: Score, block_type: BlockType) -> Result<Bytes, StoreError>;
    /// Reads a block that the caller checks itself against a stronger
    /// hash (every block a [`crate::block::Ref`] names: its SHA-256), so a
    /// store may skip re-hashing its SHA-1. Blocking.
    fn get_checked_by_caller(
        &self,
        score: Score,
        block_type: BlockType,
    ) -> Result<Bytes, StoreError> {
        self.get(score, block_type)
    }
    /// Returns once every block put before (whose `done` ran or not) is
    /// durable. Blocking.
    fn sync(&self) -> Result<(), StoreError>;
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
/// for all of them to finish.
#[derive(Debug)]
pub struct InFlight {
    count: Mutex<usize>,
    changed: Condvar,
    limit: usize,
}

impl InFlight {
    /// At most `limit` at once.
    pub fn new(limit: usize) -> InFlight {
        InFlight {
            count: Mutex::new(0),
            changed: Condvar::new(),
            limit,
        }
    }

    /// Takes a slot, waiting while all are taken.
    pub fn acquire(&self) {
        let mut n = self.count.lock().expect("in-flight lock");
        while *n >= self.limit {
            n = self.changed.wait(n).expect("in-flight lock");
        }
        *n += 1;
    }

    /// Gives a slot back.
    pub fn release(&self) {
        let mut n = self.count.lock().expect("in-flight lock");
        *n -= 1;
        self.changed.notify_all();
    }

    /// Waits until nothing is in flight.
    pub fn wait_idle(&self) {
        let mut n = self.count.lock().expect("in-flight lock");
        while *n > 0 {
            n = self.changed.wait(n).expect("in-flight lock");
        }
    }
}
