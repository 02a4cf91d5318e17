//! The embedded store: the eventi-store crate, which the server stores
//! in, in the client process, in a directory under the eventi home. No
//! server needed.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use eventi_shared::codec::prune::{PruneCommitted, PruneStatus};
use eventi_shared::{BlockType, Score};
use eventi_store::compact::{CompactOptions, CompactReport};
use eventi_store::{BlockKey, Job, NewBlock, Store, StoreOptions, ANONYMOUS};

use super::{BlockStore, InFlight, PutDone, StoreError};

/// Writes queued at once; enough to keep group commits large.
const MAX_IN_FLIGHT: usize = 1024;

/// See the module documentation.
pub struct LocalStore {
    store: Store,
    /// One eventi command at a time on this store (none for a shared
    /// read-only opening).
    _lock: Option<crate::home::lockfile::DirLock>,
    name: String,
    in_flight: Arc<InFlight>,
    closed: std::sync::atomic::AtomicBool,
    /// What `eventi prune` leaves alone (blocks stored this recently).
    grace: std::time::Duration,
}

impl LocalStore {
    /// Opens (creating) the store in `dir`, with the default prune grace.
    pub fn open(dir: &Path) -> Result<LocalStore, StoreError> {
        LocalStore::open_with_grace(dir, std::time::Duration::from_secs(24 * 3600))
    }

    /// Opens (creating) the store in `dir`; `eventi prune` leaves alone
    /// what was stored within `grace`.
    pub fn open_with_grace(
        dir: &Path,
        grace: std::time::Duration,
    ) -> Result<LocalStore, StoreError> {
        let name = dir.display().to_string();
        let options = client_options();
        let failed = |message: String| StoreError::Failed {
            store: name.clone(),
            message,
        };
        eventi_store::private::create_dir(dir).map_err(|e| failed(e.to_string()))?;
        let lock = crate::home::lockfile::DirLock::take(dir).map_err(|e| failed(e.to_string()))?;
        let store = Store::open(dir, &options).map_err(|e| failed(e.to_string()))?;
        Ok(LocalStore {
            store,
            _lock: Some(lock),
            name,
            in_flight: Arc::new(InFlight::new(MAX_IN_FLIGHT)),
            closed: std::sync::atomic::AtomicBool::new(false),
            grace,
        })
    }

    /// Opens the existing store in `dir` for reading only, without
    /// taking its lock: a mount that stays up for hours beside the
    /// backups that keep writing to it. It reads the store as it was when
    /// opened (open again to see newer snapshots); every write fails.
    pub fn open_shared(dir: &Path) -> Result<LocalStore, StoreError> {
        let name = dir.display().to_string();
        if !dir.join("ENGINE").exists() {
            return Err(StoreError::Failed {
                store: name,
                message:
                    "nothing has been backed up into this embedded store yet (run `eventi backup`)"
                        .into(),
            });
        }
        // A reader that stays up beside backups: the browser keeps its
        // own cache of what it decrypted, so RocksDB's can be small.
        let options = StoreOptions {
            block_cache_bytes: 4 << 20,
            ..client_options()
        };
        let store = Store::open_read_only(dir, &options).map_err(|e| StoreError::Failed {
            store: name.clone(),
            message: e.to_string(),
        })?;
        Ok(LocalStore {
            store,
            _lock: None,
            name,
            in_flight: Arc::new(InFlight::new(MAX_IN_FLIGHT)),
            closed: std::sync::atomic::AtomicBool::new(false),
            grace: std::time::Duration::ZERO,
        })
    }

    /// Syncs and closes the store.
    pub fn close(&self) -> Result<(), StoreError> {
        self.in_flight.wait_idle();
        if self.closed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        self.store.shutdown().map_err(|e| self.failed(e))
    }

    /// Reads a block, re-hashing its SHA-1 only if `verify`.
    fn lookup(
        &self,
        score: Score,
        block_type: BlockType,
        verify: bool,
    ) -> Result<Bytes, StoreError> {
        let key = BlockKey { score, block_type };
        let found = if verify {
            self.store.read(&key)
        } else {
            self.store.read_unverified(&key)
        };
        found
            .map_err(|e| self.failed(e))?
            .ok_or_else(|| StoreError::Missing {
                score,
                block_type,
                store: self.name.clone(),
            })
    }

    fn failed(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Failed {
            store: self.name.clone(),
            message: e.to_string(),
        }
    }
}

/// The store's options in a client process: a smaller cache than a
/// server's.
fn client_options() -> StoreOptions {
    StoreOptions {
        block_cache_bytes: 16 << 20,
        location_cache_entries: 1 << 16,
        ..StoreOptions::default()
    }
}

impl Drop for LocalStore {
    fn drop(&mut self) {
        // A store dropped without `close` still leaves its log synced and
        // its index flushed.
        let _ = self.close();
    }
}

impl BlockStore for LocalStore {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn put(&self, block_type: BlockType, data: Bytes, done: PutDone) {
        self.put_scored(Score::of(&data), block_type, data, done)
    }

    fn put_scored(&self, score: Score, block_type: BlockType, data: Bytes, done: PutDone) {
        if data.is_empty() {
            return done(Ok(score));
        }
        let ticket = self.in_flight.acquire();
        let in_flight = Arc::clone(&self.in_flight);
        let name = self.name.clone();
        let block = NewBlock {
            key: BlockKey { score, block_type },
            data,
            writer: ANONYMOUS,
        };
        self.store.submit(vec![Job::Write(
            block,
            Box::new(move |r| {
                done(r.map(|_| score).map_err(|e| StoreError::Failed {
                    store: name,
                    message: e.to_string(),
                }));
                in_flight.release(ticket);
            }),
        )]);
    }

    fn get(&self, score: Score, block_type: BlockType) -> Result<Bytes, StoreError> {
        self.lookup(score, block_type, true)
    }

    fn get_checked_by_caller(
        &self,
        score: Score,
        block_type: BlockType,
    ) -> Result<Bytes, StoreError> {
        self.lookup(score, block_type, false)
    }

    fn has(&self, keys: &[(Score, BlockType)]) -> Result<Option<Vec<bool>>, StoreError> {
        keys.iter()
            .map(|&(score, block_type)| {
                self.store
                    .contains(&BlockKey { score, block_type })
                    .map_err(|e| self.failed(e))
            })
            .collect::<Result<Vec<bool>, _>>()
            .map(Some)
    }

    fn prunable(&self) -> Option<&dyn super::prune::Prunable> {
        Some(self)
    }

    fn prune_epoch(&self) -> Option<u64> {
        self.store.prune_state(ANONYMOUS).ok().map(|s| s.epoch)
    }

    fn sync(&self) -> Result<(), StoreError> {
        // The committer orders a sync after every write queued before it.
        let (tx, rx) = std::sync::mpsc::channel();
        self.store.submit(vec![Job::Sync(Box::new(move |r| {
            let _ = tx.send(r);
        }))]);
        rx.recv()
            .map_err(|_| self.failed("store closed"))?
            .map_err(|e| self.failed(e))
    }
}

/// The embedded store prunes the blocks of its only writer (the owner,
/// unauthenticated: writer 0). Its heads live in the home, not in the
/// store, and no backup runs beside a prune (one command at a time opens
/// it), so a commit names no heads.
impl super::prune::Prunable for LocalStore {
    fn prune_status(&self) -> Result<Option<PruneStatus>, StoreError> {
        let s = self
            .store
            .prune_state(ANONYMOUS)
            .map_err(|e| self.failed(e))?;
        Ok(Some(self.status(s)))
    }

    fn prune_begin(&self) -> Result<PruneStatus, StoreError> {
        let s = self
            .store
            .prune_begin(ANONYMOUS)
            .map_err(|e| self.failed(e))?;
        Ok(self.status(s))
    }

    fn prune_mark(&self, keys: &[(Score, BlockType)]) -> Result<Vec<bool>, StoreError> {
        let keys: Vec<BlockKey> = keys
            .iter()
            .map(|&(score, block_type)| BlockKey { score, block_type })
            .collect();
        let present = self
            .store
            .hold(ANONYMOUS, &keys)
            .map_err(|e| self.failed(e))?;
        self.sync()?;
        Ok(present)
    }

    fn prune_commit(&self, _heads: Vec<(String, u64)>) -> Result<PruneCommitted, StoreError> {
        self.store
            .prune_commit(ANONYMOUS, self.grace, &mut || Ok(()))
            .map_err(|e| self.failed(e))
    }

    fn compact(&self) -> Result<Option<CompactReport>, StoreError> {
        let options = CompactOptions::default();
        self.store
            .compact(&options)
            .map(Some)
            .map_err(|e| self.failed(e))
    }
}

impl LocalStore {
    fn status(&self, s: eventi_store::prune::PruneState) -> PruneStatus {
        PruneStatus {
            epoch: s.epoch,
            since: s.since,
            reclaimed_bytes: s.reclaimed_bytes,
            grace: self.grace.as_secs(),
            heads: Vec::new(),
        }
    }
}
