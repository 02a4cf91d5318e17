//! The s3 engine: blocks in an S3-compatible object store, so that a
//! store can outgrow one machine and several `eventi-server` processes
//! (front-ends) can serve one bucket. The object store replicates and
//! heals; this engine only has to make write-once blocks fit it.
//!
//! - Blocks are packed into large objects (`pack.rs`), `pack_bytes` each,
//!   written in the background (`upload.rs`); a sync waits until every
//!   pack so far and its index are in the bucket. Until then a pack stays
//!   in memory and its blocks are read from there.
//! - Every front-end keeps a local index (RocksDB, in its data directory)
//!   of where each block lives. It is only a cache: it is rebuilt from the
//!   bucket's pack indexes when missing, after a crash, or when pointed at
//!   another bucket. Every `poll_millis` (and when a read misses) a
//!   front-end reads the pack indexes the others wrote since its last look.
//! - Reads fetch a page of a pack at a time (`pages.rs`).
//! - Write keys and heads live in the bucket as one object each
//!   (`records/`), changed with conditional writes, so every front-end
//!   sees the same ones; usage is counted from the pack indexes.
//!
//! `docs/STORAGE.md` says what is shared how, and the bounds.

mod bucket;
mod database;
mod follow;
mod holders;
mod names;
mod options;
pub(crate) mod pack;
mod pages;
mod plan;
mod records;
mod repack;
mod upload;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rocksdb::WriteBatch;

pub use options::S3Options;

use crate::engine::{Engine, Lookup};
use crate::index::{Index, Record, Wal};
use crate::keyspace::Table;
use crate::log::record::{decode_header, encode_header, HEADER_LEN};
use crate::{BlockKey, NewBlock, StoreError, StoreOptions};
use bucket::Bucket;
use database::RecordsDatabase;
use follow::ALL_READ;
use names::Names;
use pack::{PackEntry, PackId, PackIndex, PackLocation};
use pages::Pages;
use upload::{Sealed, Uploads};

/// What the `eventi-format` object of a bucket holds.
const FORMAT: &str = "eventi-s3 1\n";

/// See the module documentation.
pub struct S3Engine {
    index: Index,
    bucket: Bucket,
    names: Names,
    /// This process's front-end id: its packs' names.
    me: u64,
    options: S3Options,
    cache_dir: PathBuf,
    /// The pack being filled.
    open: Mutex<OpenPack>,
    uploads: Arc<Uploads>,
    to_upload: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Arc<Sealed>>>>,
    pages: Pages,
    /// Held by every commit to the local index (the committer's, and the
    /// reading of other front-ends' packs).
    commit_lock: Mutex<()>,
    /// How far each other front-end's packs are read: the next sequence.
    progress: Mutex<HashMap<u64, u64>>,
    /// When the last look for other front-ends' packs began.
    refreshed: Mutex<Instant>,
    /// Front-ends whose packs are not followed past a pack index that
    /// cannot be read, with why.
    stuck: Mutex<HashMap<u64, String>>,
    /// Whether the object store honours conditional writes, once known.
    conditional: std::sync::OnceLock<bool>,
    /// Where write keys and heads are kept instead of the bucket.
    database: Option<RecordsDatabase>,
    /// Packs a repack is removing or has removed: a block in them is not
    /// taken as stored (`repack.rs`).
    retiring: RwLock<HashSet<PackId>>,
    /// The repack plans applied, and this front-end's heartbeat.
    following: Mutex<repack::Following>,
    /// Blocks taken as already stored since the last sync: checked
    /// again if a repack plan was missed (`repack.rs`).
    unfenced: Mutex<Vec<BlockKey>>,
    /// Those found removed meanwhile: the next sync fails.
    poisoned: Mutex<Vec<BlockKey>>,
}

struct OpenPack {
    seq: u64,
    data: Vec<u8>,
    /// What its index will say (`pack_len` is set when it is sealed).
    index: PackIndex,
}

impl S3Engine {
    /// Connects to the bucket, checks what it holds, opens (rebuilding
    /// if needed) the local index in `dir`, and reads what other
    /// front-ends wrote.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<S3Engine, StoreError> {
        crate::private::create_dir(dir).map_err(|e| StoreError::io("creating", dir, e))?;
        let s3 = &S3Options::resolve(dir, &options.s3)?;
        let bucket = Bucket::connect(s3)?;
        let names = Names::new(&s3.prefix);
        claim_bucket(&bucket, &names)?;
        let database = records::open_database(&bucket, &names, s3)?;
        // Probed now if the store takes writes; a store that refuses
        // them (a replica down) still serves reads, and is probed at the
        // first compare-and-swap instead. Not needed with a database.
        let conditional = std::sync::OnceLock::new();
        if database.is_none() {
            match records::honours_conditional_writes(&bucket, &names) {
                Ok(honoured) => {
                    let _ = conditional.set(honoured);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the object store refuses a write: serving reads; writes will wait for it")
                }
            }
        }
        let cache_dir = dir.join("s3-cache");
        prepare_cache(dir, &cache_dir, &bucket, &names)?;
        let index = Index::open(&cache_dir, options, None, |_| {})?;
        let mut progress = HashMap::new();
        for (id, value) in index.scan(Table::Remote)? {
            if let (Ok(fe), Ok(next)) = (
                <[u8; 8]>::try_from(id.as_slice()),
                <[u8; 8]>::try_from(value.as_slice()),
            ) {
                progress.insert(u64::from_be_bytes(fe), u64::from_be_bytes(next));
            }
        }
        let me = loop {
            let id = rand::random::<u64>();
            if !progress.contains_key(&id) {
                break id;
            }
        };
        let uploads = Uploads::new();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        bucket.spawn({
            let (names, uploads) = (names.clone(), Arc::clone(&uploads));
            let in_flight = s3.uploads;
            move |client| upload::run(client, names, uploads, rx, in_flight)
        });
        let engine = S3Engine {
            index,
            bucket,
            names,
            me,
            options: s3.clone(),
            cache_dir,
            open: Mutex::new(OpenPack {
                seq: 0,
                data: Vec::new(),
                index: PackIndex::default(),
            }),
            uploads,
            to_upload: Mutex::new(Some(tx)),
            pages: Pages::new(s3.read_bytes, s3.cache_bytes),
            commit_lock: Mutex::new(()),
            progress: Mutex::new(progress),
            refreshed: Mutex::new(Instant::now()),
            stuck: Mutex::new(HashMap::new()),
            conditional,
            database,
            retiring: RwLock::new(HashSet::new()),
            following: Mutex::new(repack::Following::default()),
            unfenced: Mutex::new(Vec::new()),
            poisoned: Mutex::new(Vec::new()),
        };
        *engine.retiring.write().expect("retiring lock") = engine.load_gone_packs()?;
        let started = Instant::now();
        let read = engine.read_new_packs()?;
        // Needs a write (the heartbeat): a store refusing writes is still
        // served for reading, and the refresher tries again.
        if let Err(e) = engine.follow_plans() {
            tracing::warn!(error = %e, "cannot follow repack plans yet; retrying at the next poll");
        }
        tracing::info!(
            bucket = %engine.bucket.label(),
            frontend = %format!("{me:016x}"),
            packs_read = read,
            blocks = engine.index.stats().blocks,
            millis = started.elapsed().as_millis() as u64,
            "s3 store open"
        );
        Ok(engine)
    }

    /// Closes the pack being filled and hands it to the upload task.
    fn seal(&self, open: &mut OpenPack) {
        if open.index.is_empty() {
            return;
        }
        let id = PackId {
            frontend: self.me,
            seq: open.seq,
        };
        let data = Bytes::from(std::mem::take(&mut open.data));
        let mut written = std::mem::take(&mut open.index);
        written.pack_len = data.len() as u64;
        let mut noted = WriteBatch::default();
        self.note_pack(&mut noted, id, written.pack_len);
        if let Err(e) = self.index.db().write(noted) {
            tracing::warn!(error = %e, "cannot note a pack's length; a repack will not consider it");
        }
        written.time = crate::refs::now();
        let index = Bytes::from(written.encode());
        let sealed = Arc::new(Sealed { id, data, index });
        // Into `unsent` before the sequence moves on, so that a reader
        // always finds the pack in one place or the other.
        self.uploads
            .unsent
            .write()
            .expect("unsent lock")
            .insert(id.seq, Arc::clone(&sealed));
        open.seq += 1;
        if let Some(tx) = self.to_upload.lock().expect("upload lock").as_ref() {
            let _ = tx.send(sealed);
        }
    }

    /// Whether `pack` is being removed by a repack (`repack.rs`).
    fn is_retiring(&self, pack: PackId) -> bool {
        self.retiring.read().expect("retiring lock").contains(&pack)
    }

    /// Where a block is, unless it is in a pack being removed (then it
    /// counts as not stored, and a write stores it anew).
    fn lasting_location(&self, key: &BlockKey) -> Result<Option<PackLocation>, StoreError> {
        Ok(self
            .index
            .get(key)?
            .and_then(|v| PackLocation::decode(&v))
            .filter(|l| !self.is_retiring(l.pack)))
    }

    /// Closes the pack being filled and waits until it and every pack
    /// before it are in the bucket.
    fn seal_and_wait(&self) -> Result<(), StoreError> {
        let target = {
            let mut open = self.open.lock().expect("open pack lock");
            self.seal(&mut open);
            open.seq
        };
        self.uploads
            .wait_durable(target)
            .map_err(|message| StoreError::Bucket {
                what: "syncing to",
                object: self.bucket.label().to_string(),
                message,
            })
    }

    /// A whole record (header and block) of this front-end's pack that
    /// is not yet in the bucket, or `None` if it is not one.
    fn read_own(&self, loc: &PackLocation) -> Option<Bytes> {
        if loc.pack.frontend != self.me {
            return None;
        }
        let range = loc.record_range();
        let (start, end) = (range.start as usize, range.end as usize);
        {
            let open = self.open.lock().expect("open pack lock");
            if open.seq == loc.pack.seq {
                return open.data.get(start..end).map(Bytes::copy_from_slice);
            }
        }
        let unsent = self.uploads.unsent.read().expect("unsent lock");
        let sealed = unsent.get(&loc.pack.seq)?;
        (end <= sealed.data.len()).then(|| sealed.data.slice(start..end))
    }

    /// A whole record (header and block) of a pack.
    fn read_record(&self, loc: &PackLocation) -> Result<Option<Bytes>, StoreError> {
        if let Some(record) = self.read_own(loc) {
            return Ok(Some(record));
        }
        let name = self.names.pack(loc.pack);
        self.pages.read(loc.pack, loc.record_range(), |r| {
            self.bucket.get_range(&name, r)
        })
    }
}

impl Engine for S3Engine {
    fn index(&self) -> &Index {
        &self.index
    }

    fn get(&self, key: &BlockKey) -> Result<Option<Bytes>, StoreError> {
        let value = match self.index.get(key)? {
            Some(v) => v.to_vec(),
            None => {
                self.refresh_after_miss(Instant::now())?;
                match self.index.get(key)? {
                    Some(v) => v.to_vec(),
                    None => return Ok(None),
                }
            }
        };
        let loc = PackLocation::decode(&value)
            .ok_or_else(|| StoreError::BadLocation(key.score, "not a pack location".into()))?;
        let record = self.read_record(&loc)?.ok_or_else(|| {
            StoreError::BadLocation(
                key.score,
                format!(
                    "pack {} ends before the record at {}",
                    self.names.pack(loc.pack),
                    loc.offset
                ),
            )
        })?;
        block_of(key, &loc, record).map(Some).ok_or_else(|| {
            StoreError::BadLocation(
                key.score,
                format!(
                    "the record at {} of pack {} is another block's",
                    loc.offset,
                    self.names.pack(loc.pack)
                ),
            )
        })
    }

    fn try_get(&self, key: &BlockKey) -> Result<Lookup, StoreError> {
        // Only what memory holds: anything else may need the network (or
        // a look for new packs), which an async thread must not wait for.
        let Some(value) = self.index.get(key)? else {
            return Ok(Lookup::WouldBlock);
        };
        let Some(loc) = PackLocation::decode(&value) else {
            return Ok(Lookup::WouldBlock);
        };
        let record = match self.read_own(&loc) {
            Some(r) => Some(r),
            None => self.pages.peek(loc.pack, loc.record_range()),
        };
        Ok(match record.and_then(|r| block_of(key, &loc, r)) {
            Some(data) => Lookup::Found(data),
            None => Lookup::WouldBlock,
        })
    }

    fn put_batch(&self, blocks: &[NewBlock]) -> Result<(), StoreError> {
        let _commit = self.commit_lock.lock().expect("commit lock");
        let mut open = self.open.lock().expect("open pack lock");
        let mut batch = WriteBatch::default();
        let mut meta = self.index.meta();
        let mut charges = Vec::with_capacity(blocks.len());
        let now = crate::refs::now();
        for b in blocks {
            // Another front-end's copy may have been read in since the
            // committer looked: keep that one.
            if self.lasting_location(&b.key)?.is_some() {
                continue;
            }
            // In a pack being removed: this copy is its home from now on,
            // charged already to whoever paid for it.
            let relocated = self
                .index
                .get(&b.key)?
                .and_then(|v| PackLocation::decode(&v));
            let offset = open.data.len() as u64;
            open.data
                .extend_from_slice(&encode_header(&b.key, b.data.len(), b.writer));
            open.data.extend_from_slice(&b.data);
            let entry = PackEntry {
                key: b.key,
                len: b.data.len() as u32,
                writer: b.writer,
                offset,
            };
            open.index.blocks.push(entry);
            let pack = PackId {
                frontend: self.me,
                seq: open.seq,
            };
            let mut loc = PackLocation::of(pack, &entry);
            crate::refs::put(&mut batch, &b.key, b.writer, now);
            match relocated {
                Some(old) => loc.writer = old.writer,
                None => {
                    meta = meta.plus(b.data.len());
                    charges.push((b.writer, b.data.len() as u64));
                }
            }
            batch.put(b.key.to_bytes(), loc.encode());
            // Sealed before the batch is indexed: a reader finds no
            // entry for it yet, and then finds the pack in `unsent`.
            if open.data.len() as u64 >= self.options.pack_bytes {
                self.seal(&mut open);
            }
        }
        self.index.commit(batch, charges, meta, Wal::Off)
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.fence()?;
        let taken = self.unfenced.lock().expect("unfenced lock").len();
        self.seal_and_wait()?;
        // Again: a stall during the upload may have had this front-end
        // taken for gone, its last packs then followed by nobody.
        self.fence()?;
        // Durable now: a repack that passes this front-end over reads them.
        self.unfenced.lock().expect("unfenced lock").drain(..taken);
        Ok(())
    }

    fn contains(&self, key: &BlockKey) -> Result<bool, StoreError> {
        Ok(self.lasting_location(key)?.is_some())
    }

    fn compact(
        &self,
        options: &crate::compact::CompactOptions,
        exclusive: &crate::compact::Exclusive<'_>,
    ) -> Result<crate::compact::CompactReport, StoreError> {
        // Steps take the engine's own commit lock: the committer may go
        // on storing meanwhile.
        let _ = exclusive;
        self.repack(options)
    }

    fn reclaims(&self) -> bool {
        true
    }

    fn first_writer(&self, key: &BlockKey) -> Result<Option<u32>, StoreError> {
        Ok(self
            .index
            .get(key)?
            .and_then(|v| PackLocation::decode(&v))
            .map(|l| l.writer))
    }

    fn add_refs(&self, refs: &[(BlockKey, u32)]) -> Result<(), StoreError> {
        self.add_shared_refs(refs)
    }

    fn bury(&self, key: &BlockKey, batch: &mut WriteBatch) -> Result<(), StoreError> {
        self.bury_block(key, batch)
    }

    fn share_release(&self, writer: u32, cutoff: u64) -> Result<(), StoreError> {
        self.share_release_now(writer, cutoff)
    }

    fn hold_commits(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        Some(self.commit_lock.lock().expect("commit lock"))
    }

    fn stored_len(&self, key: &BlockKey) -> Result<Option<u64>, StoreError> {
        Ok(self
            .index
            .get(key)?
            .and_then(|v| PackLocation::decode(&v))
            .map(|l| u64::from(l.len)))
    }

    fn close(&self) -> Result<(), StoreError> {
        self.to_upload.lock().expect("upload lock").take();
        // Gone: a repack need not wait for this front-end.
        if let Err(e) = self.bucket.delete(&self.names.heartbeat(self.me)) {
            tracing::warn!(error = %e, "cannot remove this front-end's heartbeat; a repack waits for it to age");
        }
        // This front-end's own packs are indexed already: a later start
        // (with another id) need not read them again.
        let durable = self.uploads.durable();
        if durable > 0 {
            // Others may stop looking in this front-end's folder.
            let closed = self.names.closed(self.me);
            if let Err(e) = self
                .bucket
                .put(&closed, Bytes::from(format!("{durable}\n")))
            {
                tracing::warn!(error = %e, "cannot mark this front-end's packs as complete; the others will go on listing them");
            }
            self.index.put_record(
                Table::Remote,
                &self.me.to_be_bytes(),
                Some(&ALL_READ.to_be_bytes()),
            )?;
        }
        self.index.flush(true)?;
        crate::private::write_file(&self.cache_dir.join(CLEAN), b"")
            .map_err(|e| StoreError::io("writing", &self.cache_dir.join(CLEAN), e))
    }

    fn refresh_every(&self) -> Option<Duration> {
        Some(Duration::from_millis(self.options.poll_millis.max(10)))
    }

    fn refresh(&self) -> Result<(), StoreError> {
        // Held while reading, so that looks never overlap.
        let mut last = self.refreshed.lock().expect("refresh lock");
        *last = Instant::now();
        self.read_new_packs()?;
        self.follow_plans()
    }

    fn shares_records(&self) -> bool {
        true
    }

    fn get_record(&self, table: Table, id: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.record_get(table, id)
    }

    fn put_record(&self, table: Table, id: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        self.record_put(table, id, value)
    }

    fn scan_records(&self, table: Table) -> Result<Vec<Record>, StoreError> {
        self.record_scan(table)
    }

    fn swap_record(
        &self,
        table: Table,
        id: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        self.record_swap(table, id, expected, new)
    }
}

/// The block in `record` if its header says it is `key`'s, as long as
/// `loc` says.
fn block_of(key: &BlockKey, loc: &PackLocation, record: Bytes) -> Option<Bytes> {
    match decode_header(&record) {
        Some((k, len)) if k == *key && len == loc.len as usize => Some(record.slice(HEADER_LEN..)),
        _ => None,
    }
}

/// The local index's layout (its values carry the paying writer since 2).
const CACHE_VERSION: &str = "cache-2";

/// The file whose presence says the local index was closed cleanly.
const CLEAN: &str = "CLEAN";

/// Makes sure the bucket holds an eventi store (writing the format
/// object into an empty one), and nothing else.
fn claim_bucket(bucket: &Bucket, names: &Names) -> Result<(), StoreError> {
    let name = names.format();
    if bucket.put_if(&name, Bytes::from_static(FORMAT.as_bytes()), None)? {
        return Ok(());
    }
    match bucket.get(&name)? {
        Some((b, _)) if b.as_ref() == FORMAT.as_bytes() => Ok(()),
        other => Err(StoreError::Bucket {
            what: "opening",
            object: format!("{}/{name}", bucket.label()),
            message: format!(
                "not an eventi s3 store (it says {:?})",
                other.map(|(b, _)| String::from_utf8_lossy(&b).into_owned())
            ),
        }),
    }
}

/// Keeps the local index if it was closed cleanly and belongs to this
/// bucket; otherwise removes it, to be rebuilt from the bucket.
fn prepare_cache(
    dir: &Path,
    cache_dir: &Path,
    bucket: &Bucket,
    names: &Names,
) -> Result<(), StoreError> {
    // The version: a cache written in another layout is rebuilt.
    let origin = format!("{} {} {CACHE_VERSION}\n", bucket.label(), names.format());
    let origin_file = dir.join("S3-ORIGIN");
    let same_origin = std::fs::read_to_string(&origin_file).is_ok_and(|o| o == origin);
    let clean = cache_dir.join(CLEAN);
    if cache_dir.exists() && !(same_origin && clean.exists()) {
        tracing::warn!(cache = %cache_dir.display(), "the local index was not closed cleanly or is another bucket's: rebuilding it from the bucket");
        std::fs::remove_dir_all(cache_dir).map_err(|e| StoreError::io("removing", cache_dir, e))?;
    }
    if !same_origin {
        crate::private::write_file(&origin_file, origin.as_bytes())
            .map_err(|e| StoreError::io("writing", &origin_file, e))?;
    }
    match std::fs::remove_file(&clean) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("removing", &clean, e)),
    }
}
