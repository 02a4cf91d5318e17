//! Where a backup's sealed blocks go: to each member of the circle that
//! its sent-block record does not say holds the block, and cache entries
//! committed only after the members have synced the blocks they name. A
//! member that fails is left behind (its shortfall); the backup stops
//! only when fewer than `copies` members are left.
//!
//! Checkpoints (a sync, then a commit of the sent-block record and the
//! stat cache) run on their own thread and their own schedule, bytes sent
//! or time, whatever the walk and the assembler are doing: a backup of a
//! few huge files checkpoints as often as one of many small ones, so a
//! rerun after a kill at any moment resends at most about one checkpoint
//! plus what was in flight.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventi_shared::{BlockType, Score};

use crate::format::tree::BlockSink;
use crate::home::cache::{Cache, DirRecord, FileRecord, Pending};
use crate::store::circle::{Circle, Member};

/// Sent bytes after which the store is synced and the cache committed
/// (`eventi backup --checkpoint`), so an interrupted backup loses at most
/// this much work.
pub const DEFAULT_CHECKPOINT_BYTES: u64 = 512 << 20;
/// Or once this many bytes of cache entries wait (a million unchanged
/// files must not pile up their records in memory).
const FLUSH_CACHE_BYTES: usize = 8 << 20;
/// Or after this long.
const FLUSH_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    error: Mutex<Option<String>>,
    failed: AtomicBool,
}

impl Shared {
    fn fail(&self, message: String) {
        self.error.lock().expect("error").get_or_insert(message);
        self.failed.store(true, Relaxed);
    }
}

/// See the module documentation.
pub struct Uploader {
    circle: Arc<Circle>,
    cache: Arc<Cache>,
    /// Whether to trust the sent-block record (off with `--no-cache`).
    skip_known: bool,
    shared: Arc<Shared>,
    /// Blocks handed to the store.
    pub sent_blocks: AtomicU64,
    /// Their bytes.
    pub sent_bytes: AtomicU64,
    /// Blocks skipped because the store has them.
    pub known_blocks: AtomicU64,
    since_flush: AtomicU64,
    last_flush: Mutex<Instant>,
    checkpoint_bytes: u64,
    /// One flush at a time (the checkpointer's and the final one).
    flushing: Mutex<()>,
}

/// What a checkpoint made durable, as `--json` reports it.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Checkpoint {
    /// Bytes sent before the checkpoint's sync, all now durable and in the
    /// sent-block record: a rerun does not send them again.
    pub durable_bytes: u64,
    /// Blocks sent before it.
    pub durable_blocks: u64,
}

/// How often the checkpoint thread looks at the schedule.
const CHECKPOINT_POLL: Duration = Duration::from_millis(100);

impl Uploader {
    /// Uploads to the members of `circle`, recording in `cache`.
    pub fn new(
        circle: Arc<Circle>,
        cache: Arc<Cache>,
        skip_known: bool,
        checkpoint_bytes: u64,
    ) -> Uploader {
        Uploader {
            circle,
            cache,
            skip_known,
            shared: Arc::default(),
            sent_blocks: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            known_blocks: AtomicU64::new(0),
            since_flush: AtomicU64::new(0),
            last_flush: Mutex::new(Instant::now()),
            checkpoint_bytes,
            flushing: Mutex::new(()),
        }
    }

    /// Runs checkpoints until `stop` is set, calling `report` after each;
    /// a failed one stops the backup (through [`Uploader::error`]).
    pub fn run_checkpoints(&self, stop: &AtomicBool, report: &(dyn Fn(Checkpoint) + Sync)) {
        while !stop.load(Relaxed) && !self.shared.failed.load(Relaxed) {
            std::thread::sleep(CHECKPOINT_POLL);
            if !self.should_flush() {
                continue;
            }
            match self.flush() {
                Ok(c) => report(c),
                Err(e) => {
                    self.shared.fail(format!("{e:#}"));
                    return;
                }
            }
        }
    }

    /// The cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Records a file whose blocks were all handed over.
    pub fn file_stored(&self, path: &[u8], record: &FileRecord) {
        self.shared
            .pending
            .lock()
            .expect("pending")
            .file(&self.cache, path, record);
    }

    /// Records a directory whose blocks, and all below it, were handed
    /// over.
    pub fn dir_stored(&self, path: &[u8], record: &DirRecord) {
        self.shared
            .pending
            .lock()
            .expect("pending")
            .dir(&self.cache, path, record);
    }

    /// The first store error, if any: the backup must stop.
    pub fn error(&self) -> Option<String> {
        if !self.shared.failed.load(Relaxed) {
            return None;
        }
        self.shared.error.lock().expect("error").clone()
    }

    /// Whether it is time to [`Uploader::flush`].
    pub fn should_flush(&self) -> bool {
        self.since_flush.load(Relaxed) >= self.checkpoint_bytes
            || self.shared.pending.lock().expect("pending").bytes() >= FLUSH_CACHE_BYTES
            || self.last_flush.lock().expect("flush time").elapsed() >= FLUSH_INTERVAL
    }

    /// Syncs the store, then commits what the cache learned before the
    /// sync; says what is now durable.
    pub fn flush(&self) -> anyhow::Result<Checkpoint> {
        let _one = self.flushing.lock().expect("flush lock");
        // Everything sent before the first sync is answered when it
        // returns, so its block entry is in the batch taken next; every
        // file record in that batch had its blocks handed over before the
        // second sync starts, so that sync covers them. What arrives
        // meanwhile waits for the next flush.
        let checkpoint = Checkpoint {
            durable_bytes: self.sent_bytes.load(Relaxed),
            durable_blocks: self.sent_blocks.load(Relaxed),
        };
        self.since_flush.store(0, Relaxed);
        self.circle.sync_members();
        let batch = std::mem::take(&mut *self.shared.pending.lock().expect("pending"));
        let synced = self.circle.sync_members();
        // Members that synced now hold everything in the batch that names
        // them; keep that even when the backup fails, so the rerun does
        // not resend it.
        let durable = |id| {
            let members = self.circle.members();
            members.iter().zip(&synced).any(|(m, &s)| m.id == id && s)
        };
        let failed = self
            .circle
            .check_copies()
            .err()
            .map(|e| e.to_string())
            .or_else(|| self.error());
        self.cache.commit(batch, &durable, failed.is_none())?;
        if let Some(e) = failed {
            self.shared.fail(e.clone());
            anyhow::bail!("{e}");
        }
        *self.last_flush.lock().expect("flush time") = Instant::now();
        Ok(checkpoint)
    }
}

impl BlockSink for Uploader {
    fn put_block(&self, score: Score, sealed: Bytes) {
        // Members whose record says they hold it already.
        let mut holders = Vec::new();
        if self.skip_known {
            for m in self.circle.members().iter().filter(|m| m.is_up()) {
                match self.cache.has_block(m.id, &score) {
                    Ok(true) => holders.push(m.id),
                    Ok(false) => {}
                    Err(e) => return self.shared.fail(e.to_string()),
                }
            }
            if holders.len() == self.circle.up_count() {
                self.known_blocks.fetch_add(1, Relaxed);
                return;
            }
        }
        self.sent_blocks.fetch_add(1, Relaxed);
        self.sent_bytes.fetch_add(sealed.len() as u64, Relaxed);
        self.since_flush.fetch_add(sealed.len() as u64, Relaxed);
        let shared = Arc::clone(&self.shared);
        let health = self.circle.health().clone();
        self.circle.put_each(
            score,
            BlockType::DATA,
            sealed,
            &|m: &Member| holders.contains(&m.id),
            Arc::new(move |member: &Member, r| match r {
                Ok(s) => shared.pending.lock().expect("pending").block(member.id, &s),
                // The circle marked the member down; the backup goes on
                // while enough members are left.
                Err(_) => {
                    if let Err(e) = health.check_copies() {
                        shared.fail(e.to_string());
                    }
                }
            }),
        );
    }
}
