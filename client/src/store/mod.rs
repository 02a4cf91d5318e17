//! Where the client's blocks go: one small trait, a backend per kind of
//! store (`local`: the embedded store, the server's engine linked in;
//! `venti`: any venti server, authenticating with the write key when the
//! server offers it). Backup and restore speak only this trait.

pub mod local;
pub mod venti;

use std::future::Future;

use bytes::Bytes;
use eventi_shared::{BlockType, Score};

/// Why a store operation failed; each names the block or store involved.
#[derive(Debug, thiserror::Error)]
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

/// A content-addressed block store.
pub trait BlockStore: Send + Sync {
    /// A name for messages (a path or `host:port`).
    fn name(&self) -> String;
    /// Stores a block (idempotently) and returns its score.
    fn put(
        &self,
        block_type: BlockType,
        data: Bytes,
    ) -> impl Future<Output = Result<Score, StoreError>> + Send;
    /// Reads a block; its bytes are verified against the score.
    fn get(
        &self,
        score: Score,
        block_type: BlockType,
    ) -> impl Future<Output = Result<Bytes, StoreError>> + Send;
    /// Returns once every block put before is durable.
    fn sync(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}
