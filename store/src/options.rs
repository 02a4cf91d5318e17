//! Storage settings: the `[storage]` table of the server's config file,
//! and what the embedded store passes.

use serde::{Deserialize, Serialize};

use crate::{space, EngineKind};

/// Storage settings (the `[storage]` table of the config file).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreOptions {
    /// Storage design for a new data directory (an existing one keeps its own).
    pub engine: EngineKind,
    /// Size at which the data log starts a new segment file.
    pub segment_bytes: u64,
    /// RocksDB block cache (index and filter blocks, or BlobDB values).
    pub block_cache_bytes: usize,
    /// RocksDB memtable size.
    pub write_buffer_bytes: usize,
    /// Log bytes after which the index memtable is flushed, bounding the
    /// log tail that start-up after a crash must re-index.
    pub index_flush_bytes: u64,
    /// Slots in the log engine's location cache (16 bytes each; 0 turns it
    /// off), which answers most reads without a RocksDB lookup.
    pub location_cache_entries: usize,
    /// Free space kept on the data directory's filesystem: new blocks are
    /// refused ("server disk full") rather than eat into it.
    pub reserve: space::Reserve,
    /// The s3 engine's object store (`[storage.s3]`).
    pub s3: crate::s3::S3Options,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            engine: EngineKind::Log,
            segment_bytes: 1 << 30,
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 32 << 20,
            index_flush_bytes: 1 << 30,
            location_cache_entries: 1 << 20,
            reserve: space::Reserve::Auto,
            s3: crate::s3::S3Options::default(),
        }
    }
}
