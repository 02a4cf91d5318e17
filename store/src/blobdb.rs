//! The BlobDB engine: RocksDB holds the blocks themselves, in blob files
//! (so compaction moves only the small keys), with its WAL for durability.
//! Simple, but every block's bytes are written twice: to the WAL, then to
//! a blob file when the memtable is flushed. Kept so the two designs can be
//! measured on the same workload (`docs/STORAGE.md`).

use std::path::Path;

use bytes::Bytes;
use rocksdb::WriteBatch;

use crate::engine::{Engine, FULL_AT_START};
use crate::index::{Index, Wal};
use crate::{BlockKey, NewBlock, StoreError, StoreOptions};

/// See the module documentation.
pub struct BlobDbEngine {
    index: Index,
}

impl BlobDbEngine {
    /// Opens (creating) the BlobDB store in `dir`; RocksDB's WAL recovery
    /// is all the crash recovery it needs.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<BlobDbEngine, StoreError> {
        BlobDbEngine::open_as(dir, options, None)
    }

    /// Opens the store without writing a byte (RocksDB replays its WAL in
    /// memory), every write refused: for a full filesystem.
    pub fn open_read_only(dir: &Path, options: &StoreOptions) -> Result<BlobDbEngine, StoreError> {
        BlobDbEngine::open_as(dir, options, Some(FULL_AT_START))
    }

    fn open_as(
        dir: &Path,
        options: &StoreOptions,
        read_only: Option<&'static str>,
    ) -> Result<BlobDbEngine, StoreError> {
        let index = Index::open(&dir.join("blobdb"), options, read_only, |opts| {
            opts.set_enable_blob_files(true);
            opts.set_min_blob_size(0);
            opts.set_blob_file_size(256 << 20);
            // Blocks are never deleted, so there is nothing to collect.
            opts.set_enable_blob_gc(false);
        })?;
        Ok(BlobDbEngine { index })
    }
}

impl Engine for BlobDbEngine {
    fn index(&self) -> &Index {
        &self.index
    }

    fn get(&self, key: &BlockKey) -> Result<Option<Bytes>, StoreError> {
        Ok(self.index.get(key)?.map(|v| Bytes::copy_from_slice(&v)))
    }

    fn put_batch(&self, blocks: &[NewBlock]) -> Result<(), StoreError> {
        let mut meta = self.index.meta();
        let mut batch = WriteBatch::default();
        let now = crate::refs::now();
        for b in blocks {
            batch.put(b.key.to_bytes(), &b.data);
            crate::refs::put(&mut batch, &b.key, b.writer, now);
            meta = meta.plus(b.data.len());
        }
        let charges = blocks.iter().map(|b| (b.writer, b.data.len() as u64));
        self.index.commit(batch, charges, meta, Wal::On)
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.index.sync_wal()
    }

    fn close(&self) -> Result<(), StoreError> {
        self.index.sync_wal()?;
        self.index.flush(true)
    }
}
