//! What can go wrong in storage, as one typed enum.

use std::path::{Path, PathBuf};

use eventi_shared::size::format_size;
use eventi_shared::{BlockType, Score};

/// What can go wrong in storage. Messages name the file or key involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB failed.
    #[error("index database: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Stored bytes do not hash to the score they are stored under.
    #[error("block {score} type {block_type} is corrupt: its bytes hash to {actual}")]
    Corrupt {
        /// The key's score.
        score: Score,
        /// The key's type.
        block_type: BlockType,
        /// What the stored bytes hash to.
        actual: Score,
    },
    /// The index points somewhere the data is not.
    #[error("index entry for {0} points to a bad log record: {1}")]
    BadLocation(Score, String),
    /// A data directory that cannot be used.
    #[error("data directory {path}: {reason}")]
    BadDataDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An earlier failure to make data durable; the store refuses writes
    /// from then on, since what reached the disk is unknown.
    #[error("store is read-only after an earlier failure: {0}")]
    Failed(String),
    /// The store is shutting down.
    #[error("store is shut down")]
    Closed,
    /// The write would take its key past its quota; nothing was stored.
    #[error("quota exceeded")]
    QuotaExceeded,
    /// The writer may not write (anonymous, or a removed key).
    #[error("{0}")]
    WriteRefused(&'static str),
    /// Storing the block would eat into the free-space reserve.
    #[error("disk full: {} free, {} kept in reserve", format_size(*free), format_size(*reserve))]
    DiskFull {
        /// Bytes free on the filesystem.
        free: u64,
        /// Bytes the store keeps free.
        reserve: u64,
    },
    /// A prune step refused (no marking begun, or the key's heads moved).
    #[error("prune refused: {0}")]
    PruneRefused(String),
    /// The store's design keeps every block (the BlobDB engine).
    #[error("this store cannot reclaim space (its engine keeps every block: blobdb)")]
    CannotReclaim,
    /// Blocks a writer was told were stored already are gone (a repack
    /// removed their pack meanwhile): it must send them again. The store
    /// itself is fine and goes on.
    #[error("{0}")]
    SendAgain(String),
    /// The PostgreSQL database that holds an s3 store's write keys and
    /// heads failed (or was refused).
    #[error("records database {database}: {what}: {message}")]
    Database {
        /// What was being done.
        what: &'static str,
        /// Where the database is (no password).
        database: String,
        /// The client's error.
        message: String,
    },
    /// A request to the object store (the s3 engine) failed, after its
    /// retries.
    #[error("object store: {what} {object}: {message}")]
    Bucket {
        /// What was being done.
        what: &'static str,
        /// The object (or the bucket).
        object: String,
        /// The client's error.
        message: String,
    },
    /// The store was opened read-only (its filesystem was full at start).
    #[error("store is read-only: {0}")]
    ReadOnly(&'static str),
}

impl StoreError {
    pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}
