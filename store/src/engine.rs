//! The small trait a storage design implements, and opening the design a
//! data directory was created with.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::index::{Index, Record};
use crate::keyspace::Table;
use crate::{blobdb, log, private, s3, space, BlockKey, NewBlock, StoreError, StoreOptions};

/// The answer of a non-blocking read.
#[derive(Debug)]
pub enum Lookup {
    /// The block's bytes (verified, when returned by [`crate::Store::try_read`]).
    Found(Bytes),
    /// No such block.
    Absent,
    /// The bytes are not in memory; read them with [`crate::Store::read`] on a
    /// thread that may block.
    WouldBlock,
}

/// Totals for metrics and `verify`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Distinct blocks stored.
    pub blocks: u64,
    /// Their bytes, excluding any framing or index.
    pub bytes: u64,
}

/// A storage design: where block bytes go. What every design keeps the
/// same way (records, usage, totals, the read-only flag) is in its
/// [`Index`]. Reads may come from any thread; `put_batch` and `sync` come
/// from the single committer thread only.
pub(crate) trait Engine: Send + Sync + 'static {
    /// The index database the engine keeps its keys in.
    fn index(&self) -> &Index;
    /// The stored bytes of a block, unverified, or `None` if absent.
    fn get(&self, key: &BlockKey) -> Result<Option<Bytes>, StoreError>;
    /// Like [`Engine::get`], but answers [`Lookup::WouldBlock`] instead of
    /// waiting for the disk, so callers on an async thread can hand only
    /// cold reads to a blocking pool. The default always reads.
    fn try_get(&self, key: &BlockKey) -> Result<Lookup, StoreError> {
        Ok(match self.get(key)? {
            Some(data) => Lookup::Found(data),
            None => Lookup::Absent,
        })
    }
    /// Whether a block is stored (cheap for absent keys: bloom filters).
    fn contains(&self, key: &BlockKey) -> Result<bool, StoreError> {
        self.index().contains(key)
    }
    /// Stores blocks, none of them already present, as one batch: either
    /// all become readable or the call fails and none is indexed.
    fn put_batch(&self, blocks: &[NewBlock]) -> Result<(), StoreError>;
    /// Makes every block put so far durable.
    fn sync(&self) -> Result<(), StoreError>;
    /// Calls `visit` for every stored key until it returns `false`.
    fn for_each_key(&self, visit: &mut dyn FnMut(BlockKey) -> bool) -> Result<(), StoreError> {
        self.index().for_each_block_key(visit).map(|_| ())
    }
    /// Totals.
    fn stats(&self) -> StoreStats {
        self.index().stats()
    }
    /// Flushes and closes; called once at shutdown after the last sync.
    fn close(&self) -> Result<(), StoreError>;

    /// Whether the design can give space back (`prune`); one that cannot
    /// keeps every block.
    fn reclaims(&self) -> bool {
        false
    }
    /// The writer charged when `key` was stored (its log record's).
    fn first_writer(&self, key: &BlockKey) -> Result<Option<u32>, StoreError> {
        let _ = key;
        Ok(None)
    }
    /// The length of a stored block's data, without reading it.
    fn stored_len(&self, key: &BlockKey) -> Result<Option<u64>, StoreError> {
        Ok(self.get(key)?.map(|d| d.len() as u64))
    }
    /// Makes every block commit so far durable in the index itself, so
    /// that a batch letting blocks go, written through the WAL, is never
    /// replayed on top of totals older than it.
    fn before_release(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Forgets anything cached about blocks no longer stored.
    fn released(&self, keys: &[BlockKey]) {
        let _ = keys;
    }
    /// Records that each writer stored (or marked) a block already
    /// stored: its reference, made durable by the next sync.
    fn add_refs(&self, refs: &[(BlockKey, u32)]) -> Result<(), StoreError> {
        self.index().add_refs(refs)
    }
    /// Adds to `batch`, which drops a dead block's key, whatever the
    /// engine keeps of it until its bytes are gone.
    fn bury(&self, key: &BlockKey, batch: &mut rocksdb::WriteBatch) -> Result<(), StoreError> {
        let _ = (key, batch);
        Ok(())
    }
    /// Tells the other processes sharing the store, durably, that every
    /// reference of `writer` stamped before `cutoff` is let go of.
    fn share_release(&self, writer: u32, cutoff: u64) -> Result<(), StoreError> {
        let _ = (writer, cutoff);
        Ok(())
    }
    /// A lock that keeps the engine's own commits (other processes'
    /// blocks and references read in) off while a prune lets blocks go.
    fn hold_commits(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        None
    }
    /// Copies live blocks out of segments that are mostly dead and removes
    /// them (`compact`); `exclusive` runs a step with block commits held
    /// off. Designs without segments have nothing to do.
    fn compact(
        &self,
        options: &crate::compact::CompactOptions,
        exclusive: &crate::compact::Exclusive<'_>,
    ) -> Result<crate::compact::CompactReport, StoreError> {
        let _ = (options, exclusive);
        Ok(crate::compact::CompactReport::default())
    }

    /// How often to look for blocks other processes stored (several
    /// front-ends on one bucket); `None` for a store only this process
    /// writes.
    fn refresh_every(&self) -> Option<std::time::Duration> {
        None
    }
    /// Looks for blocks other processes stored, and indexes them.
    fn refresh(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Whether other processes may change the records (write keys,
    /// heads) meanwhile, so that a reader must look again now and then.
    fn shares_records(&self) -> bool {
        false
    }
    /// Record `id` of `table`.
    fn get_record(&self, table: Table, id: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.index().get_record(table, id)
    }
    /// Writes (or with `None` deletes) record `id` of `table`, durably.
    fn put_record(&self, table: Table, id: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        self.index().put_record(table, id, value)
    }
    /// Every record of `table`, in id order.
    fn scan_records(&self, table: Table) -> Result<Vec<Record>, StoreError> {
        self.index().scan(table)
    }
    /// Writes record `id` of `table` if its value is still `expected`
    /// (`None`: absent); `false` if it was not.
    fn swap_record(
        &self,
        table: Table,
        id: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        self.index().swap_record(table, id, expected, new)
    }
}

/// Which storage design a data directory uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Append-only data log, RocksDB index (venti's design; the default).
    #[default]
    Log,
    /// RocksDB BlobDB holds the blocks.
    Blobdb,
    /// An S3-compatible object store holds the blocks, in packs; several
    /// servers may share its bucket (`[storage.s3]`).
    S3,
}

impl EngineKind {
    /// The name in the `ENGINE` file and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Log => "log",
            EngineKind::Blobdb => "blobdb",
            EngineKind::S3 => "s3",
        }
    }

    fn from_name(name: &str) -> Option<EngineKind> {
        [EngineKind::Log, EngineKind::Blobdb, EngineKind::S3]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// The engine data directory `dir` was created with (its `ENGINE`
/// file), or `None` if it has none yet (a new directory).
pub fn engine_of(dir: &Path) -> Result<Option<EngineKind>, StoreError> {
    let marker = dir.join("ENGINE");
    match std::fs::read_to_string(&marker) {
        Ok(text) => {
            EngineKind::from_name(text.trim())
                .map(Some)
                .ok_or_else(|| StoreError::BadDataDir {
                    path: dir.to_path_buf(),
                    reason: format!("unknown engine {:?} in ENGINE file", text.trim()),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("reading", &marker, e)),
    }
}

/// Opens the engine a data directory was created with (recorded in its
/// `ENGINE` file), or a new one of `options.engine`.
pub(crate) fn open_engine(
    dir: &Path,
    options: &StoreOptions,
) -> Result<Arc<dyn Engine>, StoreError> {
    private::create_dir(dir).map_err(|e| StoreError::io("creating", dir, e))?;
    let kind = match engine_of(dir)? {
        Some(kind) => kind,
        None => {
            let marker = dir.join("ENGINE");
            let name = options.engine.name();
            private::write_file(&marker, format!("{name}\n").as_bytes())
                .map_err(|e| StoreError::io("writing", &marker, e))?;
            options.engine
        }
    };
    match kind {
        EngineKind::Log => open_or_read_only(
            dir,
            options,
            log::LogEngine::open,
            log::LogEngine::open_read_only,
        ),
        EngineKind::Blobdb => open_or_read_only(
            dir,
            options,
            blobdb::BlobDbEngine::open,
            blobdb::BlobDbEngine::open_read_only,
        ),
        EngineKind::S3 => Ok(Arc::new(s3::S3Engine::open(dir, options)?)),
    }
}

/// Opens the engine of an existing data directory for reading only,
/// beside a process that may be writing to it: RocksDB read-only (no
/// LOCK taken, every table file opened at once, so that the writer's
/// compactions cannot pull one away), the log tail indexed in memory.
/// What the writer adds later is not seen; open again to see it.
pub(crate) fn open_engine_read_only(
    dir: &Path,
    options: &StoreOptions,
) -> Result<Arc<dyn Engine>, StoreError> {
    match engine_of(dir)? {
        Some(EngineKind::Log) => Ok(Arc::new(log::LogEngine::open_read_only(dir, options)?)),
        Some(EngineKind::Blobdb) => Ok(Arc::new(blobdb::BlobDbEngine::open_read_only(
            dir, options,
        )?)),
        Some(EngineKind::S3) => Err(StoreError::BadDataDir {
            path: dir.to_path_buf(),
            reason: "an s3 store is not opened read-only beside its server: connect to the server"
                .into(),
        }),
        None => Err(StoreError::BadDataDir {
            path: dir.to_path_buf(),
            reason: "no ENGINE file: not a data directory (or not made yet)".into(),
        }),
    }
}

type Opener<E> = fn(&Path, &StoreOptions) -> Result<E, StoreError>;

/// Opens an engine with `open`; if that fails on a filesystem without
/// room, with `read_only` instead, so that reads are still served.
fn open_or_read_only<E: Engine>(
    dir: &Path,
    options: &StoreOptions,
    open: Opener<E>,
    read_only: Opener<E>,
) -> Result<Arc<dyn Engine>, StoreError> {
    match open(dir, options) {
        Ok(engine) => Ok(Arc::new(engine)),
        Err(e) if filesystem_full(dir, options) => {
            tracing::warn!(error = %e, "the data directory's filesystem is full: opening read-only (reads are served, writes refused until space is freed and the server restarts)");
            Ok(Arc::new(read_only(dir, options)?))
        }
        Err(e) => Err(e),
    }
}

/// Why an engine opened read-only refuses writes.
pub(crate) const FULL_AT_START: &str =
    "its filesystem was full when the server started; free space and restart it to write";

/// Whether the filesystem of `dir` has less free space than the reserve
/// (so that a failed open is likely for want of space).
fn filesystem_full(dir: &Path, options: &StoreOptions) -> bool {
    space::space_of(dir).is_ok_and(|s| s.free < options.reserve.bytes(s.total).max(1 << 20))
}
