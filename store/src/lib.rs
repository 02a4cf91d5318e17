//! eventi's block store: (score, type) -> bytes, write-once.
//!
//! [`Store`] is the whole API: the server and the client's embedded
//! store both use it. It wraps a storage design (the crate-private
//! [`engine::Engine`] trait) with what every design needs: one
//! group-commit thread that batches writes from all connections
//! (`committer`), deduplication, quotas ([`QuotaPolicy`]), SHA-1
//! verification on read, the zero score, and a free-space reserve
//! (`space`).
//!
//! The parts, one concern each:
//! - `key`: [`BlockKey`] and [`NewBlock`], what blocks are kept by;
//! - `error`: [`StoreError`];
//! - `options`: [`StoreOptions`], the `[storage]` settings;
//! - `engine`: the design trait and opening the one a directory uses;
//! - `log`: venti's design, an append-only data log with RocksDB as the
//!   index (record format, segments, recovery in its own files);
//! - `blobdb`: RocksDB BlobDB holding the blocks (kept so the two can be
//!   measured on one workload, `docs/STORAGE.md`);
//! - `index`: the RocksDB both designs hold (block keys, the meta record,
//!   usage, records), `keyspace` its table of key prefixes, `rocks` its
//!   tuning, `usage` the writers' usage book;
//! - `committer`, `space`, `quota`: group commit, the disk reserve, limits;
//! - `refs`, `prune`, `compact`: who holds each block, letting go of what
//!   no writer needs, and giving its disk space back;
//! - `private`: directories 0700 and files 0600, and their audit;
//! - `location_cache`: the log engine's read-path hint cache.

mod blobdb;
mod committer;
pub mod compact;
mod engine;
mod error;
mod index;
mod key;
pub mod keyspace;
mod location_cache;
mod log;
mod options;
pub mod private;
pub mod prune;
mod quota;
pub mod refs;
mod rocks;
pub mod s3;
pub mod space;
pub mod usage;

#[cfg(test)]
mod prune_tests;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use eventi_shared::Score;

pub use committer::{Job, SyncDone, WriteDone};
pub use engine::{engine_of, EngineKind, Lookup, StoreStats};
pub use error::StoreError;
pub use index::Record;
pub use key::{BlockKey, NewBlock, ANONYMOUS};
pub use keyspace::Table;
pub use log::MAX_RECORD_DATA;
pub use options::StoreOptions;
pub use quota::{QuotaPolicy, WriteLimit};
pub use usage::Usage;

use engine::{open_engine, Engine};

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
        prune::restore_floor(engine.as_ref())?;
        Ok(Store::over(engine, dir, options))
    }

    /// Opens an existing store for reading only, without its lock, so
    /// that another process may write to it meanwhile (a mounted
    /// snapshot beside a running backup). It sees the store as it was
    /// when opened; every write is refused.
    pub fn open_read_only(dir: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        let engine = engine::open_engine_read_only(dir, options)?;
        Ok(Store::over(engine, dir, options))
    }

    /// The store over an opened engine: its committer, and the space
    /// guards of `dir` (the committer's and the readers').
    fn over(engine: Arc<dyn Engine>, dir: &Path, options: &StoreOptions) -> Store {
        if let Some(every) = engine.refresh_every() {
            start_refresher(Arc::downgrade(&engine), every);
        }
        let space = space::SpaceGuard::new(dir, options.reserve.clone());
        let committer = Arc::new(committer::Committer::new(Arc::clone(&engine), space));
        Store {
            engine,
            committer,
            space: Arc::new(space::SpaceGuard::new(dir, options.reserve.clone())),
        }
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

    /// Reads a block without re-hashing it, for a caller that verifies
    /// what it reads anyway (the client checks every block it decrypts).
    pub fn read_unverified(&self, key: &BlockKey) -> Result<Option<Bytes>, StoreError> {
        if key.score.is_zero() {
            return Ok(Some(Bytes::new()));
        }
        self.engine.get(key)
    }

    /// Whether a block is stored.
    pub fn contains(&self, key: &BlockKey) -> Result<bool, StoreError> {
        Ok(key.score.is_zero() || self.engine.contains(key)?)
    }

    /// Calls `visit` for every stored block's key until it returns `false`.
    pub fn for_each_key(&self, visit: &mut dyn FnMut(BlockKey) -> bool) -> Result<(), StoreError> {
        self.engine.for_each_key(visit)
    }

    /// The writers that hold `key` (stored it, new or again), with the
    /// Unix time each last did, by writer number (`refs.rs`).
    pub fn holders(&self, key: &BlockKey) -> Result<Vec<(u32, u64)>, StoreError> {
        self.engine.index().holders(key)
    }

    /// The prune state of `writer` (its epoch, a marking in progress).
    pub fn prune_state(&self, writer: u32) -> Result<prune::PruneState, StoreError> {
        prune::state(self.engine.as_ref(), writer)
    }

    /// Starts (or starts over) marking what `writer` still needs.
    pub fn prune_begin(&self, writer: u32) -> Result<prune::PruneState, StoreError> {
        prune::begin(self.engine.as_ref(), writer)
    }

    /// Marks `keys` as needed by `writer` (taking hold of stored blocks
    /// it did not hold), and says which are stored. Durable at the next
    /// sync. Blocking.
    pub fn hold(&self, writer: u32, keys: &[BlockKey]) -> Result<Vec<bool>, StoreError> {
        self.committer
            .exclusive(|| prune::hold(self.engine.as_ref(), writer, keys))
    }

    /// Ends `writer`'s marking: its epoch goes up, then every reference it
    /// neither marked nor stored within `grace` is let go (`prune.rs`).
    /// `check` runs before anything changes and may refuse. Blocking.
    pub fn prune_commit(
        &self,
        writer: u32,
        grace: std::time::Duration,
        check: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<prune::PruneCommitted, StoreError> {
        let opened = self.prune_open_commit(writer, check)?;
        self.prune_finish(writer, opened, grace)
    }

    /// The first part of [`Store::prune_commit`]: runs `check`, then
    /// raises the epoch durably. A server holds head sets off around it.
    pub fn prune_open_commit(
        &self,
        writer: u32,
        check: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<prune::PruneState, StoreError> {
        let engine = self.engine.as_ref();
        self.committer
            .exclusive(|| prune::open_commit(engine, writer, check))
    }

    /// The rest of [`Store::prune_commit`]: lets go, step by step, with
    /// writes going on between the steps.
    pub fn prune_finish(
        &self,
        writer: u32,
        opened: prune::PruneState,
        grace: std::time::Duration,
    ) -> Result<prune::PruneCommitted, StoreError> {
        let engine = self.engine.as_ref();
        let cutoff = opened
            .since
            .min(refs::now().saturating_sub(grace.as_secs()));
        // Shared first: a process that reads it lets the same references
        // go, and a crash after this point is finished by every reader.
        engine.share_release(writer, cutoff)?;
        let candidates = prune::candidates(engine, writer, cutoff)?;
        let mut outcome = prune::PruneCommitted {
            epoch: opened.epoch,
            ..Default::default()
        };
        for step in candidates.chunks(prune::STEP) {
            self.committer
                .exclusive(|| prune::release(engine, writer, cutoff, step, &mut outcome))?;
        }
        prune::close_commit(engine, writer, &outcome)?;
        Ok(outcome)
    }

    /// Bytes of dead blocks still on disk, and bytes compaction gave back.
    pub fn space_counters(&self) -> Result<prune::SpaceCounters, StoreError> {
        prune::space(self.engine.as_ref())
    }

    /// One compaction pass: segments mostly dead are copied forward and
    /// removed (`compact.rs`). Runs beside reads and writes. Blocking.
    pub fn compact(
        &self,
        options: &compact::CompactOptions,
    ) -> Result<compact::CompactReport, StoreError> {
        let exclusive =
            |step: &mut dyn FnMut() -> Result<(), StoreError>| self.committer.exclusive(step);
        self.engine.compact(options, &exclusive)
    }

    /// What `writer` has stored.
    pub fn usage(&self, writer: u32) -> Usage {
        self.engine.index().usage(writer)
    }

    /// Every writer's usage, by writer number.
    pub fn all_usage(&self) -> Vec<(u32, Usage)> {
        self.engine.index().all_usage()
    }

    /// Record `id` of `table`.
    pub fn get_record(&self, table: Table, id: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.engine.get_record(table, id)
    }

    /// Writes (or with `None` deletes) record `id` of `table`, durably
    /// before returning.
    pub fn put_record(
        &self,
        table: Table,
        id: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        self.engine.put_record(table, id, value)
    }

    /// Writes record `id` of `table` if its value is still `expected`
    /// (`None`: absent), durably; `false` if it was not (someone else,
    /// in this process or, on a shared bucket, another, wrote first).
    pub fn swap_record(
        &self,
        table: Table,
        id: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        self.engine.swap_record(table, id, expected, new)
    }

    /// Reads now what other processes sharing the store (front-ends on
    /// one bucket) stored and shared since the last look; the store does
    /// so by itself every poll. Blocking.
    pub fn refresh(&self) -> Result<(), StoreError> {
        self.engine.refresh()
    }

    /// Whether other processes may change records (write keys, heads)
    /// meanwhile: several servers on one bucket.
    pub fn shares_records(&self) -> bool {
        self.engine.shares_records()
    }

    /// Every record of `table`, as (id, value), in id order.
    pub fn scan_records(&self, table: Table) -> Result<Vec<Record>, StoreError> {
        self.engine.scan_records(table)
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
        self.engine.index().read_only()
    }

    /// Commits what is queued, refuses new jobs, syncs and closes the
    /// engine. Blocking.
    pub fn shutdown(&self) -> Result<(), StoreError> {
        self.committer.stop();
        self.engine.sync()?;
        self.engine.close()
    }
}

/// Looks for blocks other processes stored every `every`, until the
/// engine is dropped.
fn start_refresher(engine: std::sync::Weak<dyn Engine>, every: std::time::Duration) {
    let spawned = std::thread::Builder::new()
        .name("eventi-refresh".into())
        .spawn(move || {
            let mut failing = false;
            loop {
                std::thread::sleep(every);
                let Some(engine) = engine.upgrade() else {
                    return;
                };
                match engine.refresh() {
                    Ok(()) if failing => {
                        tracing::info!("reading other front-ends' blocks works again");
                        failing = false;
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        tracing::warn!(error = %e, "reading other front-ends' blocks failed; retrying");
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the thread that reads other front-ends' blocks");
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
