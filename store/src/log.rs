//! The log engine: venti's design on RocksDB.
//!
//! Block bytes are appended once to segment files (`log/00000000.log`,
//! ...); RocksDB holds only the index, key (score, type) -> (segment,
//! offset, length). The index is written without RocksDB's WAL, because
//! the data log *is* the write-ahead log: every index batch also records
//! the log position it covers (the [`Meta`] key), so after a crash the
//! index recovers to some earlier batch and start-up re-indexes the log
//! from that position, checking every record's SHA-1, and cuts off a torn
//! tail. A Tsync is one `fdatasync` of the current segment.
//!
//! Record layout (all integers big-endian):
//! `magic "EvB1"[4] type[1] writer[3] length[4] score[20] data[length]`,
//! `writer` being the write key that stored the block (0 = anonymous), so
//! that recovery can re-charge usage.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, IoSlice, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use eventi_shared::{BlockType, Score};
use rocksdb::{FlushOptions, WriteBatch, WriteOptions, DB};

use super::location_cache::{CachedLocation, LocationCache};
use super::usage::{Usage, UsageBook};
use super::{
    private, rocks, BlockKey, Engine, Lookup, Meta, MetaEntry, NewBlock, StoreError, StoreOptions,
    StoreStats, FULL_AT_START,
};

/// Magic bytes at the start of every log record.
pub const RECORD_MAGIC: &[u8; 4] = b"EvB1";
/// Bytes in a record header.
pub const HEADER_LEN: usize = 32;
/// Largest block a record may hold; longer lengths mark a bad header.
pub const MAX_RECORD_DATA: usize = 64 << 20;

/// Where a block lives in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Location {
    segment: u32,
    offset: u64,
    len: u32,
}

impl Location {
    fn encode(&self) -> [u8; 16] {
        let mut v = [0u8; 16];
        v[0..4].copy_from_slice(&self.segment.to_be_bytes());
        v[4..12].copy_from_slice(&self.offset.to_be_bytes());
        v[12..16].copy_from_slice(&self.len.to_be_bytes());
        v
    }

    fn decode(v: &[u8]) -> Option<Location> {
        (v.len() == 16).then(|| Location {
            segment: u32::from_be_bytes(v[0..4].try_into().expect("4")),
            offset: u64::from_be_bytes(v[4..12].try_into().expect("8")),
            len: u32::from_be_bytes(v[12..16].try_into().expect("4")),
        })
    }
}

fn encode_header(key: &BlockKey, len: usize, writer: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(RECORD_MAGIC);
    h[4] = key.block_type.to_wire();
    h[5..8].copy_from_slice(&writer.to_be_bytes()[1..4]);
    h[8..12].copy_from_slice(&(len as u32).to_be_bytes());
    h[12..32].copy_from_slice(key.score.as_bytes());
    h
}

/// The writer recorded in a header.
fn header_writer(h: &[u8]) -> u32 {
    u32::from_be_bytes([0, h[5], h[6], h[7]])
}

/// A parsed record header; `None` if it is not one.
fn decode_header(h: &[u8]) -> Option<(BlockKey, usize)> {
    if h.len() < HEADER_LEN || &h[0..4] != RECORD_MAGIC {
        return None;
    }
    let block_type = BlockType::from_wire(h[4])?;
    let len = u32::from_be_bytes(h[8..12].try_into().expect("4")) as usize;
    if len > MAX_RECORD_DATA {
        return None;
    }
    let score = Score::from_slice(&h[12..32])?;
    Some((BlockKey { score, block_type }, len))
}

struct Writer {
    segment: u32,
    file: Arc<File>,
    path: PathBuf,
    len: u64,
    since_flush: u64,
    meta: Meta,
}

/// See the module documentation.
pub struct LogEngine {
    db: DB,
    log_dir: PathBuf,
    segments: RwLock<Vec<Arc<File>>>,
    writer: Mutex<Writer>,
    blocks: AtomicU64,
    bytes: AtomicU64,
    segment_bytes: u64,
    index_flush_bytes: u64,
    locations: LocationCache,
    usage: UsageBook,
    /// Set when opened read-only (a full filesystem): the index of the
    /// log tail that recovery could not write to RocksDB, kept in memory.
    read_only: Option<HashMap<BlockKey, Location>>,
    _cache: rocksdb::Cache,
}

fn segment_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}.log"))
}

impl LogEngine {
    /// Opens the engine in `dir`, re-indexing the log tail a crash left.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<LogEngine, StoreError> {
        LogEngine::open_as(dir, options, false)
    }

    /// Opens the engine without writing a byte: RocksDB read-only, the
    /// log tail's index in memory, every write refused. For a data
    /// directory whose filesystem is full, so that reads are still served.
    pub fn open_read_only(dir: &Path, options: &StoreOptions) -> Result<LogEngine, StoreError> {
        LogEngine::open_as(dir, options, true)
    }

    fn open_as(
        dir: &Path,
        options: &StoreOptions,
        read_only: bool,
    ) -> Result<LogEngine, StoreError> {
        let (opts, cache) = rocks::options(options);
        let index = dir.join("index");
        let db = if read_only {
            rocks::open_read_only(&opts, &index)?
        } else {
            rocks::open(&opts, &index)?
        };
        let log_dir = dir.join("log");
        if !read_only {
            private::create_dir(&log_dir).map_err(|e| StoreError::io("creating", &log_dir, e))?;
        }
        let meta = db
            .get(Meta::KEY)?
            .and_then(|v| Meta::decode(&v))
            .unwrap_or_default();
        let usage = UsageBook::load(&db)?;

        // Open every segment 0..=last; a gap means files went missing.
        let mut last = 0u32;
        for entry in
            std::fs::read_dir(&log_dir).map_err(|e| StoreError::io("listing", &log_dir, e))?
        {
            let entry = entry.map_err(|e| StoreError::io("listing", &log_dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name
                .strip_suffix(".log")
                .and_then(|n| n.parse::<u32>().ok())
            {
                last = last.max(n);
            }
        }
        last = last.max(meta.segment);
        let mut segments = Vec::new();
        for n in 0..=last {
            let path = segment_path(&log_dir, n);
            let file = private::file_options()
                .read(true)
                .write(!read_only)
                .create(n == last && !read_only)
                .truncate(false)
                .open(&path)
                .map_err(|e| StoreError::io("opening log segment", &path, e))?;
            segments.push(Arc::new(file));
        }
        let tail = Arc::clone(segments.last().expect("at least one segment"));
        let tail_path = segment_path(&log_dir, last);
        let engine = LogEngine {
            db,
            log_dir,
            writer: Mutex::new(Writer {
                segment: last,
                file: tail,
                path: tail_path,
                len: 0,
                since_flush: 0,
                meta,
            }),
            segments: RwLock::new(segments),
            blocks: AtomicU64::new(meta.blocks),
            bytes: AtomicU64::new(meta.bytes),
            segment_bytes: options.segment_bytes,
            index_flush_bytes: options.index_flush_bytes,
            locations: LocationCache::new(options.location_cache_entries),
            usage,
            read_only: None,
            _cache: cache,
        };
        if read_only {
            let engine = engine.recover_in_memory(meta)?;
            return Ok(engine);
        }
        engine.recover(meta)?;
        Ok(engine)
    }

    /// Re-indexes every record after the indexed position, checking each
    /// record's SHA-1; a bad record at the end of the last segment is a
    /// torn write and is cut off, one followed by good records is skipped
    /// and reported.
    fn recover(&self, mut meta: Meta) -> Result<(), StoreError> {
        let segments = self.segments.read().expect("segments lock").clone();
        let last = (segments.len() - 1) as u32;
        let mut reindexed = 0u64;
        // Blocks indexed in the batch being built (not yet visible to
        // `contains`), so a block logged twice is charged once.
        let mut fresh = std::collections::HashSet::new();
        let mut charges: Vec<(u32, u64)> = Vec::new();
        for seg in meta.segment..=last {
            let path = segment_path(&self.log_dir, seg);
            let file = &segments[seg as usize];
            let start = if seg == meta.segment { meta.offset } else { 0 };
            let file_len = file
                .metadata()
                .map_err(|e| StoreError::io("reading size of", &path, e))?
                .len();
            let mut batch = WriteBatch::default();
            let mut scan = Scan::new(file, start);
            let mut bad_at: Option<u64> = None;
            let mut pos = start;
            while scan.pos < file_len {
                let Some(record) = scan.next_record() else {
                    bad_at = Some(scan.pos);
                    break;
                };
                let (key, len) = (record.key, record.len);
                let loc = Location {
                    segment: seg,
                    offset: record.offset,
                    len: len as u32,
                };
                if !self.contains(&key)? && fresh.insert(key) {
                    meta.blocks += 1;
                    meta.bytes += len as u64;
                    reindexed += 1;
                    charges.push((record.writer, len as u64));
                }
                batch.put(key.to_bytes(), loc.encode());
                pos = scan.pos;
                meta.segment = seg;
                meta.offset = pos;
                if batch.len() >= 4096 {
                    batch.put(Meta::KEY, meta.encode());
                    let charged = self.usage.charge(charges.drain(..), &mut batch);
                    self.write_index(std::mem::take(&mut batch))?;
                    self.usage.commit(charged);
                    fresh.clear();
                }
            }
            if let Some(bad) = bad_at {
                let next_good = find_next_record(file, bad + 1, file_len);
                match (seg == last, next_good) {
                    (true, None) => {
                        tracing::warn!(
                            segment = %path.display(), offset = bad, cut = file_len - bad,
                            "cutting off a torn write at the end of the data log"
                        );
                        file.set_len(bad)
                            .map_err(|e| StoreError::io("truncating", &path, e))?;
                        file.sync_data()
                            .map_err(|e| StoreError::io("syncing", &path, e))?;
                    }
                    _ => {
                        return Err(StoreError::BadDataDir {
                            path: path.clone(),
                            reason: format!(
                                "corrupt log record at offset {bad} followed by more data; \
                                 refusing to start rather than lose blocks \
                                 (run `eventi-server verify` and keep a copy of the directory)"
                            ),
                        });
                    }
                }
            }
            meta.segment = seg;
            meta.offset = pos;
            batch.put(Meta::KEY, meta.encode());
            let charged = self.usage.charge(charges.drain(..), &mut batch);
            self.write_index(batch)?;
            self.usage.commit(charged);
            fresh.clear();
        }
        if reindexed > 0 {
            tracing::info!(
                blocks = reindexed,
                "re-indexed data log tail after an unclean stop"
            );
        }
        let mut w = self.writer.lock().expect("writer lock");
        w.len = meta.offset;
        w.meta = meta;
        self.blocks.store(meta.blocks, Ordering::Relaxed);
        self.bytes.store(meta.bytes, Ordering::Relaxed);
        Ok(())
    }

    /// What [`LogEngine::recover`] does, for a read-only open: the log
    /// tail is indexed in memory, nothing is written, and a torn tail is
    /// left as it is (reads stop before it).
    fn recover_in_memory(mut self, meta: Meta) -> Result<LogEngine, StoreError> {
        let segments = self.segments.read().expect("segments lock").clone();
        let mut tail = HashMap::new();
        let (mut blocks, mut bytes) = (meta.blocks, meta.bytes);
        for seg in meta.segment..segments.len() as u32 {
            let path = segment_path(&self.log_dir, seg);
            let file = &segments[seg as usize];
            let start = if seg == meta.segment { meta.offset } else { 0 };
            let file_len = file
                .metadata()
                .map_err(|e| StoreError::io("reading size of", &path, e))?
                .len();
            let mut scan = Scan::new(file, start);
            while scan.pos < file_len {
                let Some(record) = scan.next_record() else {
                    tracing::warn!(segment = %path.display(), offset = scan.pos, "read-only: the data log ends in a bad record here; blocks after it are not served");
                    break;
                };
                let (key, len) = (record.key, record.len);
                if !tail.contains_key(&key) && self.db.get_pinned(key.to_bytes())?.is_none() {
                    blocks += 1;
                    bytes += len as u64;
                }
                tail.insert(
                    key,
                    Location {
                        segment: seg,
                        offset: record.offset,
                        len: len as u32,
                    },
                );
            }
        }
        if !tail.is_empty() {
            tracing::info!(
                blocks = tail.len(),
                "read-only: indexed the data log tail in memory"
            );
        }
        self.blocks.store(blocks, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
        self.read_only = Some(tail);
        Ok(self)
    }

    fn write_index(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        self.db.write_opt(batch, &wo)?;
        Ok(())
    }

    fn location(&self, key: &BlockKey) -> Result<Option<Location>, StoreError> {
        match self.db.get_pinned(key.to_bytes())? {
            None => Ok(self.read_only.as_ref().and_then(|t| t.get(key).copied())),
            Some(v) => {
                let loc = Location::decode(&v).ok_or_else(|| {
                    StoreError::BadLocation(key.score, "malformed index value".into())
                })?;
                self.remember(key, loc);
                Ok(Some(loc))
            }
        }
    }

    fn remember(&self, key: &BlockKey, loc: Location) {
        self.locations.insert(
            key,
            CachedLocation {
                segment: loc.segment,
                offset: loc.offset,
                len: loc.len,
            },
        );
    }

    /// Reads `key` where the location cache says it is. `None` means "ask
    /// the index": no hint, or the record there is not this block.
    fn read_cached(&self, key: &BlockKey, nowait: bool) -> Option<Lookup> {
        let hint = self.locations.get(key)?;
        let loc = Location {
            segment: hint.segment,
            offset: hint.offset,
            len: hint.len,
        };
        let file = self.segment(key, loc).ok()?;
        match read_record(&file, loc, nowait) {
            Ok(Some(buf)) => record_data(key, loc, buf).ok().map(Lookup::Found),
            Ok(None) => Some(Lookup::WouldBlock),
            Err(_) => None,
        }
    }

    fn segment(&self, key: &BlockKey, loc: Location) -> Result<Arc<File>, StoreError> {
        let segments = self.segments.read().expect("segments lock");
        segments.get(loc.segment as usize).cloned().ok_or_else(|| {
            StoreError::BadLocation(key.score, format!("no segment {}", loc.segment))
        })
    }

    /// Starts a new segment once the current one is full. The old one is
    /// synced first so that a sync need only ever touch the newest file.
    fn roll_if_full(&self, w: &mut Writer, incoming: u64) -> Result<(), StoreError> {
        if w.len == 0 || w.len + incoming <= self.segment_bytes {
            return Ok(());
        }
        w.file
            .sync_data()
            .map_err(|e| StoreError::io("syncing", &w.path, e))?;
        let next = w.segment + 1;
        let path = segment_path(&self.log_dir, next);
        let file = private::file_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::io("creating log segment", &path, e))?;
        let file = Arc::new(file);
        self.segments
            .write()
            .expect("segments lock")
            .push(Arc::clone(&file));
        if let Ok(dir) = File::open(&self.log_dir) {
            let _ = dir.sync_all();
        }
        w.segment = next;
        w.file = file;
        w.path = path;
        w.len = 0;
        Ok(())
    }
}

impl Engine for LogEngine {
    fn get(&self, key: &BlockKey) -> Result<Option<Bytes>, StoreError> {
        if let Some(Lookup::Found(data)) = self.read_cached(key, false) {
            return Ok(Some(data));
        }
        let Some(loc) = self.location(key)? else {
            return Ok(None);
        };
        let file = self.segment(key, loc)?;
        let buf = read_record(&file, loc, false)
            .map_err(|e| StoreError::io("reading", &segment_path(&self.log_dir, loc.segment), e))?
            .expect("a blocking read always completes");
        record_data(key, loc, buf).map(Some)
    }

    fn contains(&self, key: &BlockKey) -> Result<bool, StoreError> {
        if self.read_only.as_ref().is_some_and(|t| t.contains_key(key)) {
            return Ok(true);
        }
        Ok(self.db.get_pinned(key.to_bytes())?.is_some())
    }

    fn put_batch(&self, blocks: &[NewBlock]) -> Result<(), StoreError> {
        if self.read_only.is_some() {
            return Err(StoreError::ReadOnly(FULL_AT_START));
        }
        let mut w = self.writer.lock().expect("writer lock");
        let total: usize = blocks.iter().map(|b| HEADER_LEN + b.data.len()).sum();
        self.roll_if_full(&mut w, total as u64)?;
        let mut headers: Vec<[u8; HEADER_LEN]> = Vec::with_capacity(blocks.len());
        let mut batch = WriteBatch::default();
        let mut meta = w.meta;
        let mut offset = w.len;
        for b in blocks {
            let loc = Location {
                segment: w.segment,
                offset,
                len: b.data.len() as u32,
            };
            headers.push(encode_header(&b.key, b.data.len(), b.writer));
            batch.put(b.key.to_bytes(), loc.encode());
            meta.blocks += 1;
            meta.bytes += b.data.len() as u64;
            offset += (HEADER_LEN + b.data.len()) as u64;
        }
        // Headers and blocks go to the kernel straight from where they
        // are: no staging copy of the data.
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(blocks.len() * 2);
        for (h, b) in headers.iter().zip(blocks) {
            slices.push(IoSlice::new(h));
            slices.push(IoSlice::new(&b.data));
        }
        if let Err(e) = pwrite_all(&w.file, &mut slices, w.len) {
            // Leave no partial record behind: it would be cut at start-up
            // anyway, but a later append must not follow garbage.
            let _ = w.file.set_len(w.len);
            return Err(StoreError::io("appending to", &w.path, e));
        }
        meta.segment = w.segment;
        meta.offset = offset;
        batch.put(Meta::KEY, meta.encode());
        let charged = self.usage.charge(
            blocks.iter().map(|b| (b.writer, b.data.len() as u64)),
            &mut batch,
        );
        self.write_index(batch)?;
        self.usage.commit(charged);
        let mut at = w.len;
        for b in blocks {
            let loc = Location {
                segment: w.segment,
                offset: at,
                len: b.data.len() as u32,
            };
            self.remember(&b.key, loc);
            at += (HEADER_LEN + b.data.len()) as u64;
        }
        w.since_flush += offset - w.len;
        w.len = offset;
        w.meta = meta;
        self.blocks.store(meta.blocks, Ordering::Relaxed);
        self.bytes.store(meta.bytes, Ordering::Relaxed);
        if w.since_flush >= self.index_flush_bytes {
            w.since_flush = 0;
            let mut fo = FlushOptions::default();
            fo.set_wait(false);
            self.db.flush_opt(&fo)?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        if self.read_only.is_some() {
            return Ok(());
        }
        // Sync outside the writer lock so commits go on meanwhile. Older
        // segments were synced when the log rolled past them.
        let (file, path) = {
            let w = self.writer.lock().expect("writer lock");
            (Arc::clone(&w.file), w.path.clone())
        };
        file.sync_data()
            .map_err(|e| StoreError::io("syncing", &path, e))
    }

    fn try_get(&self, key: &BlockKey) -> Result<Lookup, StoreError> {
        if let Some(found) = self.read_cached(key, true) {
            return Ok(found);
        }
        let Some(loc) = self.location(key)? else {
            return Ok(Lookup::Absent);
        };
        let file = self.segment(key, loc)?;
        match read_record(&file, loc, true) {
            Ok(Some(buf)) => Ok(Lookup::Found(record_data(key, loc, buf)?)),
            Ok(None) => Ok(Lookup::WouldBlock),
            Err(e) => Err(StoreError::io(
                "reading",
                &segment_path(&self.log_dir, loc.segment),
                e,
            )),
        }
    }

    fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        rocks::get_meta(&self.db, key)
    }

    fn put_meta(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        if self.read_only.is_some() {
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
        let mut more = true;
        rocks::for_each_block_key(&self.db, &mut |k| {
            more = visit(k);
            more
        })?;
        if let Some(tail) = &self.read_only {
            for key in tail.keys() {
                if !more {
                    break;
                }
                if self.db.get_pinned(key.to_bytes())?.is_none() {
                    more = visit(*key);
                }
            }
        }
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            blocks: self.blocks.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    fn close(&self) -> Result<(), StoreError> {
        if self.read_only.is_some() {
            return Ok(());
        }
        self.sync()?;
        self.db.flush()?;
        Ok(())
    }

    fn read_only(&self) -> Option<&'static str> {
        self.read_only.as_ref().map(|_| FULL_AT_START)
    }
}

/// Checks that a record read at `loc` is the one the index promised and
/// returns its data.
fn record_data(key: &BlockKey, loc: Location, buf: Vec<u8>) -> Result<Bytes, StoreError> {
    match decode_header(&buf) {
        Some((k, len)) if k == *key && len == loc.len as usize => {}
        _ => {
            return Err(StoreError::BadLocation(
                key.score,
                format!("segment {} offset {}", loc.segment, loc.offset),
            ))
        }
    }
    let mut data = Bytes::from(buf);
    Ok(data.split_off(HEADER_LEN))
}

/// Reads a whole record into a new buffer, skipping the zero-fill a
/// `vec![0; n]` would cost. With `nowait`, reads only if every byte is in
/// the page cache (`preadv2` with `RWF_NOWAIT`) and answers `Ok(None)`
/// otherwise.
fn read_record(file: &File, loc: Location, nowait: bool) -> std::io::Result<Option<Vec<u8>>> {
    use std::os::fd::AsRawFd;
    let want = HEADER_LEN + loc.len as usize;
    let mut buf: Vec<u8> = Vec::with_capacity(want);
    let flags = if nowait { libc::RWF_NOWAIT } else { 0 };
    while buf.len() < want {
        let missing = want - buf.len();
        let spare = &mut buf.spare_capacity_mut()[..missing];
        let iov = libc::iovec {
            iov_base: spare.as_mut_ptr().cast(),
            iov_len: spare.len(),
        };
        let at = loc.offset + buf.len() as u64;
        // SAFETY: the iovec covers the vector's spare capacity, which the
        // kernel only writes; the fd is open for the borrow of `file`.
        let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, at as libc::off_t, flags) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // Not cached, or a filesystem without RWF_NOWAIT.
                Some(libc::EAGAIN) | Some(libc::EOPNOTSUPP) if nowait => return Ok(None),
                _ => return Err(e),
            }
        }
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        // SAFETY: the kernel initialised the next `n` bytes.
        unsafe { buf.set_len(buf.len() + n as usize) };
        if nowait && buf.len() < want {
            // Part of the range is not cached.
            return Ok(None);
        }
    }
    Ok(Some(buf))
}

/// Writes every slice at `offset` onward (`pwritev`, in chunks of at most
/// `IOV_MAX` slices, resuming after short writes).
fn pwrite_all(file: &File, mut bufs: &mut [IoSlice<'_>], mut offset: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    const IOV_MAX: usize = 1024;
    while !bufs.is_empty() {
        let n = bufs.len().min(IOV_MAX);
        // SAFETY: IoSlice is ABI-compatible with iovec on Unix; the slices
        // borrow live buffers for the duration of the call.
        let written = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                bufs.as_ptr().cast::<libc::iovec>(),
                n as libc::c_int,
                offset as libc::off_t,
            )
        };
        if written < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        offset += written as u64;
        IoSlice::advance_slices(&mut bufs, written as usize);
    }
    Ok(())
}

/// Looks for a record that parses and verifies after `from`: if one
/// exists, the damage at `from` is not a torn tail.
fn find_next_record(file: &File, from: u64, end: u64) -> Option<u64> {
    let mut buf = vec![0u8; (end.saturating_sub(from)).min(256 << 20) as usize];
    file.read_exact_at(&mut buf, from).ok()?;
    let mut i = 0;
    while i + HEADER_LEN <= buf.len() {
        if &buf[i..i + 4] == RECORD_MAGIC {
            if let Some((key, len)) = decode_header(&buf[i..]) {
                let start = i + HEADER_LEN;
                if start + len <= buf.len() && Score::of(&buf[start..start + len]) == key.score {
                    return Some(from + i as u64);
                }
            }
        }
        i += 1;
    }
    None
}

/// Sequential reads through `pread`, so recovery does not disturb the
/// shared file offset.
/// A verified record found by [`Scan`].
struct ScannedRecord {
    key: BlockKey,
    len: usize,
    writer: u32,
    offset: u64,
}

/// Reads a segment's records in order, checking each one's SHA-1: what
/// both recoveries (into the index, or into memory) walk.
struct Scan<'a> {
    reader: BufReader<ReadAt<'a>>,
    /// Where the next record starts (after a failed read: where the bad
    /// record starts).
    pos: u64,
    header: [u8; HEADER_LEN],
    data: Vec<u8>,
}

impl<'a> Scan<'a> {
    fn new(file: &'a File, start: u64) -> Scan<'a> {
        Scan {
            reader: BufReader::with_capacity(1 << 20, ReadAt::new(file, start)),
            pos: start,
            header: [0u8; HEADER_LEN],
            data: Vec::new(),
        }
    }

    /// The record at `pos`, or `None` if the bytes there are not a whole
    /// record that hashes to its score (`pos` then stays at it).
    fn next_record(&mut self) -> Option<ScannedRecord> {
        self.reader.read_exact(&mut self.header).ok()?;
        let (key, len) = decode_header(&self.header)?;
        self.data.resize(len, 0);
        self.reader.read_exact(&mut self.data).ok()?;
        if Score::of(&self.data) != key.score {
            return None;
        }
        let record = ScannedRecord {
            key,
            len,
            writer: header_writer(&self.header),
            offset: self.pos,
        };
        self.pos += (HEADER_LEN + len) as u64;
        Some(record)
    }
}

struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
}

impl<'a> ReadAt<'a> {
    fn new(file: &'a File, pos: u64) -> Self {
        ReadAt { file, pos }
    }
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Walks a segment file for `verify`: every record's key and whether its
/// bytes hash to its score. Stops at the first unparseable header.
pub fn scan_segment(
    path: &Path,
    visit: &mut dyn FnMut(u64, BlockKey, bool),
) -> Result<Option<u64>, StoreError> {
    let file = File::open(path).map_err(|e| StoreError::io("opening", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| StoreError::io("reading size of", path, e))?
        .len();
    let mut reader = BufReader::with_capacity(1 << 20, ReadAt::new(&file, 0));
    let mut pos = 0u64;
    let mut header = [0u8; HEADER_LEN];
    let mut data = Vec::new();
    while pos < len {
        if reader.read_exact(&mut header).is_err() {
            return Ok(Some(pos));
        }
        let Some((key, n)) = decode_header(&header) else {
            return Ok(Some(pos));
        };
        data.resize(n, 0);
        if reader.read_exact(&mut data).is_err() {
            return Ok(Some(pos));
        }
        visit(pos, key, Score::of(&data) == key.score);
        pos += (HEADER_LEN + n) as u64;
    }
    Ok(None)
}
