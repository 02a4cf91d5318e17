//! The index database both engines hold: one RocksDB with the block keys
//! (whose values are the engine's own: a log location, or the block
//! itself), the [`Meta`] record, the writers' usage and the other tables
//! of [`crate::keyspace`]. Every commit writes the new blocks' keys, the
//! new meta record and the charged usage in one batch, so a crash never
//! leaves totals or usage that disagree with what is indexed.

use std::path::Path;
use std::sync::Mutex;

use rocksdb::{DBPinnableSlice, IteratorMode, WriteBatch, WriteOptions, DB};

use crate::keyspace::Table;
use crate::usage::{Usage, UsageBook};
use crate::{rocks, BlockKey, StoreError, StoreOptions, StoreStats};

/// A record id and its value, as [`Index::scan`] lists them.
pub type Record = (Vec<u8>, Vec<u8>);

/// Whether a commit goes through RocksDB's write-ahead log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wal {
    /// Through the WAL (the BlobDB engine: RocksDB is the only copy).
    On,
    /// Without it (the log engine: the data log is the write-ahead log,
    /// and the meta record says how far it is indexed).
    Off,
}

/// See the module documentation.
pub struct Index {
    db: DB,
    /// The last committed meta record.
    meta: Mutex<Meta>,
    usage: UsageBook,
    /// Why writes are refused, when opened read-only.
    read_only: Option<&'static str>,
    /// Whether references went through the WAL since the last sync.
    refs_unsynced: std::sync::atomic::AtomicBool,
    /// Held while a record is written, so a swap sees no write between
    /// its read and its own.
    records_lock: Mutex<()>,
    _cache: rocksdb::Cache,
}

impl Index {
    /// Opens (creating) the index at `path`; with `read_only` set, without
    /// writing a byte, every later write refused with that reason. `tune`
    /// adjusts RocksDB's options for the engine.
    pub fn open(
        path: &Path,
        options: &StoreOptions,
        read_only: Option<&'static str>,
        tune: impl FnOnce(&mut rocksdb::Options),
    ) -> Result<Index, StoreError> {
        let (mut opts, cache) = rocks::options(options);
        tune(&mut opts);
        let db = match read_only {
            Some(_) => rocks::open_read_only(&opts, path)?,
            None => rocks::open(&opts, path)?,
        };
        let meta = db
            .get(Table::Meta.prefix())?
            .and_then(|v| Meta::decode(&v))
            .unwrap_or_default();
        let usage = UsageBook::load(&db)?;
        if read_only.is_none() {
            let given = crate::refs::migrate(&db)?;
            if given > 0 {
                tracing::info!(
                    blocks = given,
                    "blocks stored before references were kept are now held by the legacy holder"
                );
            }
        }
        Ok(Index {
            db,
            meta: Mutex::new(meta),
            usage,
            read_only,
            refs_unsynced: std::sync::atomic::AtomicBool::new(false),
            records_lock: Mutex::new(()),
            _cache: cache,
        })
    }

    /// The last committed meta record.
    pub fn meta(&self) -> Meta {
        *self.meta.lock().expect("meta lock")
    }

    /// The stored value of a block key.
    pub fn get(&self, key: &BlockKey) -> Result<Option<DBPinnableSlice<'_>>, StoreError> {
        Ok(self.db.get_pinned(key.to_bytes())?)
    }

    /// Whether a block key is indexed (bloom filters make absent keys cheap).
    pub fn contains(&self, key: &BlockKey) -> Result<bool, StoreError> {
        Ok(self.get(key)?.is_some())
    }

    /// Writes `batch` (the new blocks' keys) with the meta record `meta`
    /// and the usage charged for `charges` (writer, bytes), all at once.
    pub fn commit(
        &self,
        mut batch: WriteBatch,
        charges: impl IntoIterator<Item = (u32, u64)>,
        meta: Meta,
        wal: Wal,
    ) -> Result<(), StoreError> {
        self.refuse_if_read_only()?;
        batch.put(Table::Meta.prefix(), meta.encode());
        let charged = self.usage.charge(charges, &mut batch);
        let mut wo = WriteOptions::default();
        wo.disable_wal(wal == Wal::Off);
        // Commits come from one thread at a time (the committer, or
        // recovery before it starts), so the lock guards only the copy
        // that readers of totals see, not the write: a metrics scrape never
        // waits for the disk.
        self.db.write_opt(batch, &wo)?;
        self.usage.commit(charged);
        *self.meta.lock().expect("meta lock") = meta;
        Ok(())
    }

    /// Records that `writer` stored `key` again (a block already there):
    /// through the WAL, made durable by [`Index::sync_refs`].
    pub fn add_refs(&self, refs: &[(BlockKey, u32)]) -> Result<(), StoreError> {
        if refs.is_empty() {
            return Ok(());
        }
        self.refuse_if_read_only()?;
        let now = crate::refs::now();
        let mut batch = WriteBatch::default();
        for (key, writer) in refs {
            crate::refs::put(&mut batch, key, *writer, now);
        }
        self.db.write(batch)?;
        self.refs_unsynced
            .store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Makes the references added since the last call durable (one WAL
    /// sync, only if there are any).
    pub fn sync_refs(&self) -> Result<(), StoreError> {
        if self
            .refs_unsynced
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            if let Err(e) = self.sync_wal() {
                self.refs_unsynced
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Every holder of `key`, with the Unix time it last stored it.
    pub fn holders(&self, key: &BlockKey) -> Result<Vec<(u32, u64)>, StoreError> {
        crate::refs::holders(&self.db, key)
    }

    /// The database, for the modules that keep their own tables in it
    /// (`prune`).
    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    /// Writes a batch that lets blocks go (`prune`): the references and
    /// keys it deletes, the usage moved by `deltas` and the meta record
    /// `meta`, through the WAL and synced, so that it survives a crash
    /// whatever the engine's block commits do. The caller has made every
    /// earlier block commit durable first (`Engine::before_release`), so
    /// that the WAL's replay never lands on totals older than it.
    pub(crate) fn write_release(
        &self,
        mut batch: WriteBatch,
        deltas: &std::collections::HashMap<u32, (i64, i64)>,
        meta: Meta,
    ) -> Result<(), StoreError> {
        self.refuse_if_read_only()?;
        batch.put(Table::Meta.prefix(), meta.encode());
        let next = self.usage.adjust(deltas, &mut batch);
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo)?;
        self.usage.commit(next);
        *self.meta.lock().expect("meta lock") = meta;
        Ok(())
    }

    /// Writes a raw batch (tests that fake an old data directory).
    #[cfg(test)]
    pub fn write_for_test(&self, batch: WriteBatch) {
        self.db.write(batch).unwrap();
    }

    /// Makes every commit through the WAL durable.
    pub fn sync_wal(&self) -> Result<(), StoreError> {
        if self.read_only.is_none() {
            self.db.flush_wal(true)?;
        }
        Ok(())
    }

    /// Flushes the memtable to table files (waiting for it with `wait`),
    /// so commits made without the WAL survive a crash.
    pub fn flush(&self, wait: bool) -> Result<(), StoreError> {
        if self.read_only.is_none() {
            let mut fo = rocksdb::FlushOptions::default();
            fo.set_wait(wait);
            self.db.flush_opt(&fo)?;
        }
        Ok(())
    }

    /// Record `id` of `table`.
    pub fn get_record(&self, table: Table, id: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(table.key(id))?)
    }

    /// Writes (or with `None` deletes) record `id` of `table`, durably
    /// before returning: through the WAL with a sync, even in the log
    /// engine, whose block commits skip it (mixing is safe: no block
    /// commit writes a record key).
    pub fn put_record(
        &self,
        table: Table,
        id: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        self.refuse_if_read_only()?;
        let _one = self.records_lock.lock().expect("records lock");
        self.write_record(table, id, value)
    }

    fn write_record(
        &self,
        table: Table,
        id: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let mut batch = WriteBatch::default();
        match value {
            Some(v) => batch.put(table.key(id), v),
            None => batch.delete(table.key(id)),
        }
        self.db.write_opt(batch, &wo)?;
        Ok(())
    }

    /// Writes record `id` of `table` if its value is still `expected`
    /// (`None`: absent), durably; `false` if it was not.
    pub fn swap_record(
        &self,
        table: Table,
        id: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        self.refuse_if_read_only()?;
        let _one = self.records_lock.lock().expect("records lock");
        if self.get_record(table, id)?.as_deref() != expected {
            return Ok(false);
        }
        self.write_record(table, id, Some(new))?;
        Ok(true)
    }

    /// Every record of `table`, as (id, value), in id order.
    pub fn scan(&self, table: Table) -> Result<Vec<Record>, StoreError> {
        rocks::scan(&self.db, table)
    }

    /// Calls `visit` for every block key until it returns `false`; the
    /// answer is whether it never did.
    pub fn for_each_block_key(
        &self,
        visit: &mut dyn FnMut(BlockKey) -> bool,
    ) -> Result<bool, StoreError> {
        for item in self.db.iterator(IteratorMode::Start) {
            let (k, _) = item?;
            if let Some(key) = BlockKey::from_bytes(&k) {
                if !visit(key) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// What `writer` has stored.
    pub fn usage(&self, writer: u32) -> Usage {
        self.usage.get(writer)
    }

    /// Every writer's usage, by writer number.
    pub fn all_usage(&self) -> Vec<(u32, Usage)> {
        self.usage.all()
    }

    /// Totals, from the meta record.
    pub fn stats(&self) -> StoreStats {
        let meta = self.meta();
        StoreStats {
            blocks: meta.blocks,
            bytes: meta.bytes,
        }
    }

    /// Why writes are refused, if opened read-only.
    pub fn read_only(&self) -> Option<&'static str> {
        self.read_only
    }

    /// `Err(ReadOnly)` if opened read-only.
    pub fn refuse_if_read_only(&self) -> Result<(), StoreError> {
        match self.read_only {
            Some(why) => Err(StoreError::ReadOnly(why)),
            None => Ok(()),
        }
    }
}

/// The meta record: how far the data log is indexed and the totals,
/// committed in the same batch as the keys it describes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Log segment holding the end of the indexed log (log engine only).
    pub segment: u32,
    /// Offset in that segment up to which every record is indexed.
    pub offset: u64,
    /// Blocks stored.
    pub blocks: u64,
    /// Bytes stored.
    pub bytes: u64,
}

impl Meta {
    /// The record's bytes: four big-endian integers.
    pub fn encode(&self) -> [u8; 28] {
        let mut v = [0u8; 28];
        v[0..4].copy_from_slice(&self.segment.to_be_bytes());
        v[4..12].copy_from_slice(&self.offset.to_be_bytes());
        v[12..20].copy_from_slice(&self.blocks.to_be_bytes());
        v[20..28].copy_from_slice(&self.bytes.to_be_bytes());
        v
    }

    /// Parses the record; `None` if it is not 28 bytes.
    pub fn decode(v: &[u8]) -> Option<Meta> {
        if v.len() != 28 {
            return None;
        }
        let u64_at = |i: usize| u64::from_be_bytes(v[i..i + 8].try_into().expect("8 bytes"));
        Some(Meta {
            segment: u32::from_be_bytes(v[0..4].try_into().expect("4 bytes")),
            offset: u64_at(4),
            blocks: u64_at(12),
            bytes: u64_at(20),
        })
    }

    /// This record with one block of `bytes` added to the totals.
    pub fn plus(mut self, bytes: usize) -> Meta {
        self.blocks += 1;
        self.bytes += bytes as u64;
        self
    }
}
