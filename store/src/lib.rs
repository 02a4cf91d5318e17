//! Block storage: (score, type) -> bytes, write-once.
//!
//! [`Engine`] is the small trait a storage design implements; two exist so
//! that they can be measured against each other on the same workload
//! (`docs/STORAGE.md`): [`log::LogEngine`], venti's own design (an
//! append-only data log with RocksDB as the index), and
//! [`blobdb::BlobDbEngine`] (RocksDB BlobDB holding the blocks themselves).
//! [`Store`] wraps an engine with what every design needs: one group-commit
//! thread that batches writes from all connections, deduplication,
//! SHA-1 verification on read, and the zero score.

pub mod blobdb;
mod committer;
mod location_cache;
pub mod log;
pub mod private;
pub mod rocks;
pub mod space;
pub mod usage;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use eventi_shared::{BlockType, Score};
use serde::{Deserialize, Serialize};

pub use committer::{Job, SyncDone, WriteDone};
pub use usage::Usage;

/// The key of a block: its score and its wire type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockKey {
    /// SHA-1 of the block.
    pub score: Score,
    /// Wire type; the same bytes under two types are two blocks.
    pub block_type: BlockType,
}

impl BlockKey {
    /// Bytes in an encoded key: score then type.
    pub const LEN: usize = Score::LEN + 1;

    /// The key as stored in RocksDB.
    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let mut k = [0u8; Self::LEN];
        k[..Score::LEN].copy_from_slice(self.score.as_bytes());
        k[Score::LEN] = self.block_type.to_wire();
        k
    }

    /// Parses a stored key; `None` for keys that are not block keys.
    pub fn from_bytes(k: &[u8]) -> Option<BlockKey> {
        if k.len() != Self::LEN {
            return None;
        }
        Some(BlockKey {
            score: Score::from_slice(&k[..Score::LEN])?,
            block_type: BlockType::from_wire(k[Score::LEN])?,
        })
    }
}

/// A block about to be stored; its score was computed from `data`.
#[derive(Clone, Debug)]
pub struct NewBlock {
    /// Where it will be found.
    pub key: BlockKey,
    /// Its bytes.
    pub data: Bytes,
    /// The write key that sends it (0 = anonymous), charged if it is new.
    pub writer: u32,
}

/// The anonymous writer: sessions that never authenticated.
pub const ANONYMOUS: u32 = 0;

/// How much a writer may store; see [`QuotaPolicy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteLimit {
    /// No limit (the embedded store, or a server without keys).
    Unlimited,
    /// At most this many bytes of new blocks in all.
    Bytes(u64),
    /// No writes at all, with the reason to give.
    Refused(&'static str),
}

/// Decides, at commit time, what each writer may store. The check runs
/// under the commit lock against committed usage plus the rest of the
/// batch, so a quota is never overshot, however many connections write.
pub trait QuotaPolicy: Send + Sync {
    /// The limit for `writer`.
    fn limit(&self, writer: u32) -> WriteLimit;
}

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
    #[error("disk full: {} free, {} kept in reserve", eventi_shared::size::format_size(*free), eventi_shared::size::format_size(*reserve))]
    DiskFull {
        /// Bytes free on the filesystem.
        free: u64,
        /// Bytes the store keeps free.
        reserve: u64,
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

/// The answer of a non-blocking read.
#[derive(Debug)]
pub enum Lookup {
    /// The block's bytes (verified, when returned by [`Store::try_read`]).
    Found(Bytes),
    /// No such block.
    Absent,
    /// The bytes are not in memory; read them with [`Store::read`] on a
    /// thread that may block.
    WouldBlock,
}

/// A metadata key and its value, as [`Engine::scan_meta`] lists them.
pub type MetaEntry = (Vec<u8>, Vec<u8>);

/// Totals for metrics and `verify`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Distinct blocks stored.
    pub blocks: u64,
    /// Their bytes, excluding any framing or index.
    pub bytes: u64,
}

/// A storage design. Reads may come from any thread; `put_batch` and
/// `sync` come from the single committer thread only.
pub trait Engine: Send + Sync + 'static {
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
    fn contains(&self, key: &BlockKey) -> Result<bool, StoreError>;
    /// Stores blocks, none of them already present, as one batch: either
    /// all become readable or the call fails and none is indexed.
    fn put_batch(&self, blocks: &[NewBlock]) -> Result<(), StoreError>;
    /// Makes every block put so far durable.
    fn sync(&self) -> Result<(), StoreError>;
    /// Reads a metadata value kept beside the blocks (write keys).
    fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes (or with `None` deletes) metadata durably, before returning.
    fn put_meta(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError>;
    /// Every metadata entry whose key starts with `prefix`.
    fn scan_meta(&self, prefix: &[u8]) -> Result<Vec<MetaEntry>, StoreError>;
    /// What `writer` has stored.
    fn usage(&self, writer: u32) -> Usage;
    /// Every writer's usage.
    fn all_usage(&self) -> Vec<(u32, Usage)>;
    /// Calls `visit` for every stored key until it returns `false`.
    fn for_each_key(&self, visit: &mut dyn FnMut(BlockKey) -> bool) -> Result<(), StoreError>;
    /// Totals.
    fn stats(&self) -> StoreStats;
    /// Flushes and closes; called once at shutdown after the last sync.
    fn close(&self) -> Result<(), StoreError>;
    /// Why the engine takes no writes, if it was opened read-only.
    fn read_only(&self) -> Option<&'static str> {
        None
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
}

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
        }
    }
}

/// The block store a server (or the embedded client store) uses.
#[derive(Clone)]
pub struct Store {
    engine: Arc<dyn Engine>,
    committer: Arc<committer::Committer>,
    space: Arc<space::SpaceGuard>,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, recovering after a crash.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        let engine = open_engine(dir, options)?;
        let space = space::SpaceGuard::new(dir, options.reserve.clone());
        let committer = Arc::new(committer::Committer::new(Arc::clone(&engine), space));
        Ok(Store {
            engine,
            committer,
            space: Arc::new(space::SpaceGuard::new(dir, options.reserve.clone())),
        })
    }

    /// Reads and verifies a block. The zero score is the empty block of
    /// every type. Blocking: call from a blocking-safe context.
    pub fn read(&self, key: &BlockKey) -> Result<Option<Bytes>, StoreError> {
        if key.score.is_zero() {
            return Ok(Some(Bytes::new()));
        }
        match self.engine.get(key)? {
            Some(data) => verified(key, data).map(Some),
            None => Ok(None),
        }
    }

    /// Reads and verifies a block if that needs no disk access; see [`Lookup`].
    pub fn try_read(&self, key: &BlockKey) -> Result<Lookup, StoreError> {
        if key.score.is_zero() {
            return Ok(Lookup::Found(Bytes::new()));
        }
        match self.engine.try_get(key)? {
            Lookup::Found(data) => verified(key, data).map(Lookup::Found),
            other => Ok(other),
        }
    }

    /// Sets what each writer may store (default: unlimited for all).
    pub fn set_policy(&self, policy: Arc<dyn QuotaPolicy>) {
        self.committer.set_policy(policy);
    }

    /// What `writer` has stored.
    pub fn usage(&self, writer: u32) -> Usage {
        self.engine.usage(writer)
    }

    /// Queues writes and syncs (group commit; see `committer`). Each job's
    /// callback runs exactly once, possibly before this returns, possibly
    /// on another connection's thread. Blocks for at most one commit.
    pub fn submit(&self, jobs: Vec<Job>) {
        self.committer.submit(jobs)
    }

    /// Writes a block and waits for the outcome (`true` if new).
    pub async fn write(&self, block: NewBlock) -> Result<bool, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let done: WriteDone = Box::new(move |r| {
            let _ = tx.send(r);
        });
        self.submit(vec![Job::Write(block, done)]);
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Waits until every earlier write is durable.
    pub async fn sync(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let done: SyncDone = Box::new(move |r| {
            let _ = tx.send(r);
        });
        self.submit(vec![Job::Sync(done)]);
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Totals.
    pub fn stats(&self) -> StoreStats {
        self.engine.stats()
    }

    /// Free space on the data directory's filesystem and the reserve kept
    /// there, in bytes (`None` if the filesystem cannot be asked).
    pub fn space(&self) -> Option<(space::Space, u64)> {
        self.space.now()
    }

    /// Why the store takes no writes at all, if it was opened read-only.
    pub fn read_only(&self) -> Option<&'static str> {
        self.engine.read_only()
    }

    /// The engine, for `verify`.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// Commits what is queued, refuses new jobs, syncs and closes the
    /// engine. Blocking.
    pub fn shutdown(&self) -> Result<(), StoreError> {
        self.committer.stop();
        self.engine.sync()?;
        self.engine.close()
    }
}

fn verified(key: &BlockKey, data: Bytes) -> Result<Bytes, StoreError> {
    let actual = Score::of(&data);
    if actual != key.score {
        return Err(StoreError::Corrupt {
            score: key.score,
            block_type: key.block_type,
            actual,
        });
    }
    Ok(data)
}

/// Opens the engine a data directory was created with (recorded in its
/// `ENGINE` file), or a new one of `options.engine`.
pub fn open_engine(dir: &Path, options: &StoreOptions) -> Result<Arc<dyn Engine>, StoreError> {
    private::create_dir(dir).map_err(|e| StoreError::io("creating", dir, e))?;
    let marker = dir.join("ENGINE");
    let kind = match std::fs::read_to_string(&marker) {
        Ok(text) => match text.trim() {
            "log" => EngineKind::Log,
            "blobdb" => EngineKind::Blobdb,
            other => {
                return Err(StoreError::BadDataDir {
                    path: dir.to_path_buf(),
                    reason: format!("unknown engine {other:?} in ENGINE file"),
                })
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let name = match options.engine {
                EngineKind::Log => "log",
                EngineKind::Blobdb => "blobdb",
            };
            private::write_file(&marker, format!("{name}\n").as_bytes())
                .map_err(|e| StoreError::io("writing", &marker, e))?;
            options.engine
        }
        Err(e) => return Err(StoreError::io("reading", &marker, e)),
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

/// The meta record both engines keep in their RocksDB, committed in the
/// same batch as the keys it describes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Meta {
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
    /// The meta key: shorter than any block key, so never confused with one.
    pub const KEY: &'static [u8] = b"\0meta";

    pub fn encode(&self) -> [u8; 28] {
        let mut v = [0u8; 28];
        v[0..4].copy_from_slice(&self.segment.to_be_bytes());
        v[4..12].copy_from_slice(&self.offset.to_be_bytes());
        v[12..20].copy_from_slice(&self.blocks.to_be_bytes());
        v[20..28].copy_from_slice(&self.bytes.to_be_bytes());
        v
    }

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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both engines: blocks written before a read-only open are served,
    /// and every write is refused with the reason.
    #[test]
    fn a_read_only_engine_serves_and_refuses() {
        for kind in [EngineKind::Log, EngineKind::Blobdb] {
            let dir = tempfile::tempdir().unwrap();
            let options = StoreOptions {
                engine: kind,
                ..StoreOptions::default()
            };
            let data = Bytes::from_static(b"a block written before the disk filled");
            let key = BlockKey {
                score: Score::of(&data),
                block_type: BlockType::DATA,
            };
            let block = NewBlock {
                key,
                data: data.clone(),
                writer: ANONYMOUS,
            };
            let engine = open_engine(dir.path(), &options).unwrap();
            engine.put_batch(std::slice::from_ref(&block)).unwrap();
            engine.sync().unwrap();
            // Not closed: the read-only open must recover what a crash left.
            drop(engine);
            let ro: Arc<dyn Engine> = match kind {
                EngineKind::Log => {
                    Arc::new(log::LogEngine::open_read_only(dir.path(), &options).unwrap())
                }
                EngineKind::Blobdb => {
                    Arc::new(blobdb::BlobDbEngine::open_read_only(dir.path(), &options).unwrap())
                }
            };
            assert_eq!(ro.get(&key).unwrap().as_ref(), Some(&data), "{kind:?}");
            assert!(ro.contains(&key).unwrap());
            let mut keys = Vec::new();
            ro.for_each_key(&mut |k| {
                keys.push(k);
                true
            })
            .unwrap();
            assert_eq!(keys, [key], "{kind:?}");
            assert!(matches!(
                ro.put_batch(&[block]),
                Err(StoreError::ReadOnly(_))
            ));
            assert!(matches!(
                ro.put_meta(b"k", Some(b"v")),
                Err(StoreError::ReadOnly(_))
            ));
            assert_eq!(ro.read_only(), Some(FULL_AT_START));
            ro.close().unwrap();
        }
    }
}
