//! The BlobDB engine: RocksDB holds the blocks themselves, in blob files
//! (so compaction moves only the small keys), with its WAL for durability.
//! Simple, but every block's bytes are written twice: to the WAL, then to
//! a blob file when the memtable is flushed. Kept so the two designs can be
//! measured on the same workload (`docs/STORAGE.md`).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use rocksdb::{WriteBatch, DB};

use super::usage::{Usage, UsageBook};
use super::{
    rocks, BlockKey, Engine, Meta, MetaEntry, NewBlock, StoreError, StoreOptions, StoreStats,
    FULL_AT_START,
};

/// See the module documentation.
pub struct BlobDbEngine {
    db: DB,
    meta: Mutex<Meta>,
    blocks: AtomicU64,
    bytes: AtomicU64,
    usage: UsageBook,
    /// Opened read-only (a full filesystem): every write is refused.
    read_only: bool,
    _cache: rocksdb::Cache,
}

impl BlobDbEngine {
    /// Opens (creating) the BlobDB store in `dir`; RocksDB's WAL recovery
    /// is all the crash recovery it needs.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<BlobDbEngine, StoreError> {
        BlobDbEngine::open_as(dir, options, false)
    }

    /// Opens the store without writing a byte (RocksDB replays its WAL in
    /// memory), every write refused: for a full filesystem.
    pub fn open_read_only(dir: &Path, options: &StoreOptions) -> Result<BlobDbEngine, StoreError> {
        BlobDbEngine::open_as(dir, options, true)
    }

    fn open_as(
        dir: &Path,
        options: &StoreOptions,
        read_only: bool,
    ) -> Result<BlobDbEngine, StoreError> {
        let (mut opts, cache) = rocks::options(options);
        opts.set_enable_blob_files(true);
        opts.set_min_blob_size(0);
        opts.set_blob_file_size(256 << 20);
        // Blocks are never deleted, so there is nothing to collect.
        opts.set_enable_blob_gc(false);
        let path = dir.join("blobdb");
        let db = if read_only {
            rocks::open_read_only(&opts, &path)?
        } else {
            rocks::open(&opts, &path)?
        };
        let meta = db
            .get(Meta::KEY)?
            .and_then(|v| Meta::decode(&v))
            .unwrap_or_default();
        let usage = UsageBook::load(&db)?;
        Ok(BlobDbEngine {
            db,
            meta: Mutex::new(meta),
            blocks: AtomicU64::new(meta.blocks),
            bytes: AtomicU64::new(meta.bytes),
            usage,
            read_only,
            _cache: cache,
        })
    }
}

impl Engine for BlobDbEngine {
    fn get(&self, key: &BlockKey) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .db
            .get_pinned(key.to_bytes())?
            .map(|v| Bytes::copy_from_slice(&v)))
    }

    fn contains(&self, key: &BlockKey) -> Result<bool, StoreError> {
        Ok(self.db.get_pinned(key.to_bytes())?.is_some())
    }

    fn put_batch(&self, blocks: &[NewBlock]) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly(FULL_AT_START));
        }
        let mut meta = self.meta.lock().expect("meta lock");
        let mut next = *meta;
        let mut batch = WriteBatch::default();
        for b in blocks {
            batch.put(b.key.to_bytes(), &b.data);
            next.blocks += 1;
            next.bytes += b.data.len() as u64;
        }
        batch.put(Meta::KEY, next.encode());
        let charged = self.usage.charge(
            blocks.iter().map(|b| (b.writer, b.data.len() as u64)),
            &mut batch,
        );
        self.db.write(batch)?;
        self.usage.commit(charged);
        *meta = next;
        self.blocks.store(next.blocks, Ordering::Relaxed);
        self.bytes.store(next.bytes, Ordering::Relaxed);
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Ok(());
        }
        self.db.flush_wal(true)?;
        Ok(())
    }

    fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        rocks::get_meta(&self.db, key)
    }

    fn put_meta(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly(FULL_AT_START));
        }
        rocks::put_meta(&self.db, key, value)
    }

    fn scan_meta(&self, prefix: &[u8]) -> Result<Vec<MetaEntry>, StoreError> {
        rocks::scan_meta(&self.db, prefix)
    }

    fn usage(&self, writer: u32) -> Usage {
        self.usage.get(writer)
    }

    fn all_usage(&self) -> Vec<(u32, Usage)> {
        self.usage.all()
    }

    fn for_each_key(&self, visit: &mut dyn FnMut(BlockKey) -> bool) -> Result<(), StoreError> {
        rocks::for_each_block_key(&self.db, visit)
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            blocks: self.blocks.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    fn close(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Ok(());
        }
        self.db.flush_wal(true)?;
        self.db.flush()?;
        Ok(())
    }

    fn read_only(&self) -> Option<&'static str> {
        self.read_only.then_some(FULL_AT_START)
    }
}
