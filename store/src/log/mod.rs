//! The log engine: venti's design on RocksDB.
//!
//! Block bytes are appended once to segment files (`segments`, records in
//! the format of `record`); the [`Index`] holds only key (score, type) ->
//! (segment, offset, length). The index is written without RocksDB's WAL,
//! because the data log *is* the write-ahead log: every index batch also
//! records the log position it covers (the meta record), so after a crash
//! the index recovers to some earlier batch and start-up re-indexes the
//! log from that position (`recover`). A Tsync is one `fdatasync` of the
//! current segment.

mod compact;
pub(crate) mod record;
mod recover;
mod segments;

use std::collections::HashMap;
use std::fs::File;
use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rocksdb::WriteBatch;

use crate::engine::{Engine, Lookup, StoreStats, FULL_AT_START};
use crate::index::{Index, Meta, Wal};
use crate::location_cache::{CachedLocation, LocationCache};
use crate::{BlockKey, NewBlock, StoreError, StoreOptions};
pub use record::MAX_RECORD_DATA;
use record::{encode_header, record_data, Location, HEADER_LEN};
use segments::{pwrite_all, read_record, Segments};

/// The tail segment appends go to.
struct Writer {
    segment: u32,
    file: Arc<File>,
    path: PathBuf,
    len: u64,
    since_flush: u64,
    /// Where the part of the segment not yet handed to writeback starts.
    written_back: u64,
}

/// Appended bytes after which their writeback is started (see
/// [`segments::start_writeback`]).
const WRITEBACK_BYTES: u64 = 8 << 20;

/// See the module documentation.
pub struct LogEngine {
    index: Index,
    segments: Segments,
    writer: Mutex<Writer>,
    segment_bytes: u64,
    index_flush_bytes: u64,
    locations: LocationCache,
    /// Set when opened read-only (a full filesystem): the index of the
    /// log tail that recovery could not write to RocksDB, kept in memory,
    /// and the totals with it.
    tail: Option<(HashMap<BlockKey, Location>, StoreStats)>,
}

impl LogEngine {
    /// Opens the engine in `dir`, re-indexing the log tail a crash left.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<LogEngine, StoreError> {
        let mut engine = LogEngine::open_as(dir, options, None)?;
        let meta = recover::into_index(&engine, engine.index.meta())?;
        let w = engine.writer.get_mut().expect("writer lock");
        if w.segment == meta.segment {
            w.len = meta.offset;
        }
        Ok(engine)
    }

    /// Opens the engine without writing a byte: RocksDB read-only, the
    /// log tail's index in memory, every write refused. For a data
    /// directory whose filesystem is full, so that reads are still served.
    pub fn open_read_only(dir: &Path, options: &StoreOptions) -> Result<LogEngine, StoreError> {
        let mut engine = LogEngine::open_as(dir, options, Some(FULL_AT_START))?;
        let (tail, meta) = recover::in_memory(&engine, engine.index.meta())?;
        let stats = StoreStats {
            blocks: meta.blocks,
            bytes: meta.bytes,
        };
        engine.tail = Some((tail, stats));
        Ok(engine)
    }

    fn open_as(
        dir: &Path,
        options: &StoreOptions,
        read_only: Option<&'static str>,
    ) -> Result<LogEngine, StoreError> {
        let index = Index::open(&dir.join("index"), options, read_only, |_| {})?;
        let meta = index.meta();
        let segments = Segments::open(&dir.join("log"), meta.segment, read_only.is_some())?;
        check_indexed_segment(&segments, meta)?;
        let (segment, file) = segments.last();
        let path = segments.path(segment);
        let len = file
            .metadata()
            .map_err(|e| StoreError::io("reading size of", &path, e))?
            .len();
        Ok(LogEngine {
            index,
            writer: Mutex::new(Writer {
                segment,
                file,
                path,
                len,
                since_flush: 0,
                written_back: len,
            }),
            segments,
            segment_bytes: options.segment_bytes,
            index_flush_bytes: options.index_flush_bytes,
            locations: LocationCache::new(options.location_cache_entries),
            tail: None,
        })
    }

    fn location(&self, key: &BlockKey) -> Result<Option<Location>, StoreError> {
        match self.index.get(key)? {
            None => Ok(self.tail.as_ref().and_then(|(t, _)| t.get(key).copied())),
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
        let file = self.segments.get(key, loc).ok()?;
        match read_record(&file, loc, nowait) {
            Ok(Some(buf)) => record_data(key, loc, buf).ok().map(Lookup::Found),
            Ok(None) => Some(Lookup::WouldBlock),
            Err(_) => None,
        }
    }

    /// Reads the record at `loc` (answering `None` when `nowait` and it is
    /// not in the page cache).
    fn read_at(
        &self,
        key: &BlockKey,
        loc: Location,
        nowait: bool,
    ) -> Result<Option<Bytes>, StoreError> {
        let file = self.segments.get(key, loc)?;
        match read_record(&file, loc, nowait) {
            Ok(Some(buf)) => record_data(key, loc, buf).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(StoreError::io(
                "reading",
                &self.segments.path(loc.segment),
                e,
            )),
        }
    }

    /// Reads `key` where the index says it is. Compaction may move the
    /// block and remove its segment between the lookup and the read: the
    /// index is then asked once more.
    fn try_get_at_location(&self, key: &BlockKey, nowait: bool) -> Result<Lookup, StoreError> {
        let Some(loc) = self.location(key)? else {
            return Ok(Lookup::Absent);
        };
        match self.read_at(key, loc, nowait) {
            Ok(Some(data)) => Ok(Lookup::Found(data)),
            Ok(None) => Ok(Lookup::WouldBlock),
            // Compaction moved the block (and removed or punched its old
            // place) between the lookup and the read, or a prune let it
            // go: the index says where it is now, if anywhere.
            Err(e @ StoreError::BadLocation(..)) => match self.location(key)? {
                None => Ok(Lookup::Absent),
                Some(now) if now != loc => match self.read_at(key, now, nowait)? {
                    Some(data) => Ok(Lookup::Found(data)),
                    None => Ok(Lookup::WouldBlock),
                },
                Some(_) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Starts a new segment now (compaction: the tail is to be emptied).
    fn roll(&self, w: &mut Writer) -> Result<(), StoreError> {
        if w.len == 0 {
            return Ok(());
        }
        w.file
            .sync_data()
            .map_err(|e| StoreError::io("syncing", &w.path, e))?;
        let next = w.segment + 1;
        w.file = self.segments.create(next)?;
        w.segment = next;
        w.path = self.segments.path(next);
        w.len = 0;
        w.written_back = 0;
        Ok(())
    }

    /// Syncs the log, points the meta record at its end and flushes the
    /// index: every commit so far is then durable in RocksDB's own files,
    /// and start-up re-indexes nothing before this point.
    fn make_index_durable(&self) -> Result<(), StoreError> {
        let w = self.writer.lock().expect("writer lock");
        w.file
            .sync_data()
            .map_err(|e| StoreError::io("syncing", &w.path, e))?;
        let mut meta = self.index.meta();
        if (meta.segment, meta.offset) != (w.segment, w.len) {
            meta.segment = w.segment;
            meta.offset = w.len;
            self.index
                .commit(WriteBatch::default(), [], meta, Wal::Off)?;
        }
        self.index.sync_refs()?;
        self.index.flush(true)
    }

    /// Starts a new segment once the current one is full. The old one is
    /// synced first so that a sync need only ever touch the newest file.
    fn roll_if_full(&self, w: &mut Writer, incoming: u64) -> Result<(), StoreError> {
        if w.len + incoming <= self.segment_bytes {
            return Ok(());
        }
        self.roll(w)
    }
}

/// Refuses a log whose indexed segment is missing or shorter than the
/// index says: records the index points to are gone, and appending past
/// the end would leave a hole.
fn check_indexed_segment(segments: &Segments, meta: Meta) -> Result<(), StoreError> {
    if meta.offset == 0 {
        return Ok(());
    }
    let path = segments.path(meta.segment);
    let len = match segments.contains(meta.segment) {
        true => std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        false => 0,
    };
    if len < meta.offset {
        return Err(StoreError::BadDataDir {
            path,
            reason: format!(
                "the index covers this log segment up to offset {} but it holds {len} bytes \
                 (files were removed or truncated); refusing to start",
                meta.offset
            ),
        });
    }
    Ok(())
}

impl Engine for LogEngine {
    fn index(&self) -> &Index {
        &self.index
    }

    fn get(&self, key: &BlockKey) -> Result<Option<Bytes>, StoreError> {
        if let Some(Lookup::Found(data)) = self.read_cached(key, false) {
            return Ok(Some(data));
        }
        match self.try_get_at_location(key, false)? {
            Lookup::Found(data) => Ok(Some(data)),
            Lookup::Absent => Ok(None),
            Lookup::WouldBlock => unreachable!("a blocking read always completes"),
        }
    }

    fn try_get(&self, key: &BlockKey) -> Result<Lookup, StoreError> {
        if let Some(found) = self.read_cached(key, true) {
            return Ok(found);
        }
        self.try_get_at_location(key, true)
    }

    fn contains(&self, key: &BlockKey) -> Result<bool, StoreError> {
        if self.tail.as_ref().is_some_and(|(t, _)| t.contains_key(key)) {
            return Ok(true);
        }
        self.index.contains(key)
    }

    fn put_batch(&self, blocks: &[NewBlock]) -> Result<(), StoreError> {
        self.index.refuse_if_read_only()?;
        let mut w = self.writer.lock().expect("writer lock");
        let total: usize = blocks.iter().map(|b| HEADER_LEN + b.data.len()).sum();
        self.roll_if_full(&mut w, total as u64)?;
        let mut headers: Vec<[u8; HEADER_LEN]> = Vec::with_capacity(blocks.len());
        let mut locations = Vec::with_capacity(blocks.len());
        let mut batch = WriteBatch::default();
        let mut meta = self.index.meta();
        let mut offset = w.len;
        let now = crate::refs::now();
        for b in blocks {
            crate::refs::put(&mut batch, &b.key, b.writer, now);
            let loc = Location {
                segment: w.segment,
                offset,
                len: b.data.len() as u32,
            };
            headers.push(encode_header(&b.key, b.data.len(), b.writer));
            batch.put(b.key.to_bytes(), loc.encode());
            locations.push(loc);
            meta = meta.plus(b.data.len());
            offset += loc.record_len() as u64;
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
        let charges = blocks.iter().map(|b| (b.writer, b.data.len() as u64));
        self.index.commit(batch, charges, meta, Wal::Off)?;
        for (b, loc) in blocks.iter().zip(locations) {
            self.remember(&b.key, loc);
        }
        w.since_flush += offset - w.len;
        w.len = offset;
        if w.len.saturating_sub(w.written_back) >= WRITEBACK_BYTES {
            segments::start_writeback(&w.file, w.written_back, w.len);
            w.written_back = w.len;
        }
        if w.since_flush >= self.index_flush_bytes {
            w.since_flush = 0;
            self.index.flush(false)?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        if self.tail.is_some() {
            return Ok(());
        }
        // Sync outside the writer lock so commits go on meanwhile. Older
        // segments were synced when the log rolled past them.
        let (file, path) = {
            let w = self.writer.lock().expect("writer lock");
            (Arc::clone(&w.file), w.path.clone())
        };
        file.sync_data()
            .map_err(|e| StoreError::io("syncing", &path, e))?;
        // References of blocks stored again live only in RocksDB's WAL.
        self.index.sync_refs()
    }

    fn for_each_key(&self, visit: &mut dyn FnMut(BlockKey) -> bool) -> Result<(), StoreError> {
        if !self.index.for_each_block_key(visit)? {
            return Ok(());
        }
        if let Some((tail, _)) = &self.tail {
            for key in tail.keys() {
                if !self.index.contains(key)? && !visit(*key) {
                    break;
                }
            }
        }
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        match &self.tail {
            Some((_, stats)) => *stats,
            None => self.index.stats(),
        }
    }

    fn close(&self) -> Result<(), StoreError> {
        if self.tail.is_some() {
            return Ok(());
        }
        self.sync()?;
        self.index.flush(true)
    }

    fn reclaims(&self) -> bool {
        self.tail.is_none()
    }

    fn first_writer(&self, key: &BlockKey) -> Result<Option<u32>, StoreError> {
        let Some(loc) = self.location(key)? else {
            return Ok(None);
        };
        let file = self.segments.get(key, loc)?;
        let mut header = [0u8; HEADER_LEN];
        std::os::unix::fs::FileExt::read_exact_at(&*file, &mut header, loc.offset)
            .map_err(|e| StoreError::io("reading", &self.segments.path(loc.segment), e))?;
        Ok(Some(record::header_writer(&header)))
    }

    fn stored_len(&self, key: &BlockKey) -> Result<Option<u64>, StoreError> {
        Ok(self.location(key)?.map(|loc| loc.len as u64))
    }

    fn before_release(&self) -> Result<(), StoreError> {
        self.make_index_durable()
    }

    fn released(&self, keys: &[BlockKey]) {
        for key in keys {
            self.locations.forget(key);
        }
    }

    fn compact(
        &self,
        options: &crate::compact::CompactOptions,
        exclusive: &crate::compact::Exclusive<'_>,
    ) -> Result<crate::compact::CompactReport, StoreError> {
        compact::compact(self, options, exclusive)
    }
}
