//! Start-up after an unclean stop: the index covers the log up to the
//! position in its meta record; every record after it is re-indexed,
//! each one's SHA-1 checked. A bad record at the very end of the last
//! segment is a torn write and is cut off; one followed by good records
//! is damage, and the engine refuses to start rather than lose blocks.
//! A read-only open (a full disk) indexes the tail in memory instead and
//! writes nothing.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;

use rocksdb::WriteBatch;

use super::record::{decode_header, find_record, header_writer, Location, HEADER_LEN};
use super::LogEngine;
use crate::index::{Meta, Wal};
use crate::{BlockKey, StoreError};
use eventi_shared::Score;

/// Index entries written per batch while re-indexing.
const BATCH: usize = 4096;

/// Re-indexes every record after the indexed position into the index;
/// returns the position the log ends at (the meta record of the last batch).
pub fn into_index(engine: &LogEngine, start: Meta) -> Result<Meta, StoreError> {
    let mut meta = start;
    let segments = engine.segments.from(start.segment);
    let last = engine.segments.last().0;
    let mut reindexed = 0u64;
    // Blocks indexed in the batch being built (not yet visible to
    // `contains`), so a block logged twice is charged once.
    let mut fresh = HashSet::new();
    let mut charges: Vec<(u32, u64)> = Vec::new();
    let now = crate::refs::now();
    for (seg, file) in segments {
        let (path, from, file_len) = unindexed(engine, seg, &file, start)?;
        let mut batch = WriteBatch::default();
        let mut scan = Scan::new(&file, from);
        let mut bad_at: Option<u64> = None;
        meta.segment = seg;
        meta.offset = from;
        while scan.pos < file_len {
            let Some(record) = scan.next_record() else {
                bad_at = Some(scan.pos);
                break;
            };
            if !engine.index.contains(&record.key)? && fresh.insert(record.key) {
                meta = meta.plus(record.len);
                reindexed += 1;
                charges.push((record.writer, record.len as u64));
                crate::refs::put(&mut batch, &record.key, record.writer, now);
            }
            // A block indexed already and logged again is compaction's
            // copy: as good as the original, and its holders are as they
            // were (its first writer may have let go of it since).
            batch.put(record.key.to_bytes(), record.location(seg).encode());
            meta.offset = scan.pos;
            if batch.len() >= BATCH {
                let full = std::mem::take(&mut batch);
                engine
                    .index
                    .commit(full, charges.drain(..), meta, Wal::Off)?;
                fresh.clear();
            }
        }
        if let Some(bad) = bad_at {
            let next_good = find_next_record(&file, bad + 1, file_len);
            if seg != last || next_good.is_some() {
                return Err(StoreError::BadDataDir {
                    path: path.clone(),
                    reason: format!(
                        "corrupt log record at offset {bad} followed by more data; \
                         refusing to start rather than lose blocks \
                         (run `eventi-server verify` and keep a copy of the directory)"
                    ),
                });
            }
            tracing::warn!(
                segment = %path.display(), offset = bad, cut = file_len - bad,
                "cutting off a torn write at the end of the data log"
            );
            file.set_len(bad)
                .map_err(|e| StoreError::io("truncating", &path, e))?;
            file.sync_data()
                .map_err(|e| StoreError::io("syncing", &path, e))?;
        }
        engine
            .index
            .commit(batch, charges.drain(..), meta, Wal::Off)?;
        fresh.clear();
    }
    if reindexed > 0 {
        tracing::info!(
            blocks = reindexed,
            "re-indexed data log tail after an unclean stop"
        );
    }
    Ok(meta)
}

/// What [`into_index`] does, for a read-only open: the log tail is
/// indexed in memory, nothing is written, and a torn tail is left as it
/// is (reads stop before it). Returns the tail's index and the totals
/// with it.
pub fn in_memory(
    engine: &LogEngine,
    start: Meta,
) -> Result<(HashMap<BlockKey, Location>, Meta), StoreError> {
    let mut tail = HashMap::new();
    let mut meta = start;
    for (seg, file) in engine.segments.from(start.segment) {
        let (path, from, file_len) = unindexed(engine, seg, &file, start)?;
        let mut scan = Scan::new(&file, from);
        while scan.pos < file_len {
            let Some(record) = scan.next_record() else {
                tracing::warn!(segment = %path.display(), offset = scan.pos, "read-only: the data log ends in a bad record here; blocks after it are not served");
                break;
            };
            if !tail.contains_key(&record.key) && !engine.index.contains(&record.key)? {
                meta = meta.plus(record.len);
            }
            tail.insert(record.key, record.location(seg));
        }
    }
    if !tail.is_empty() {
        tracing::info!(
            blocks = tail.len(),
            "read-only: indexed the data log tail in memory"
        );
    }
    Ok((tail, meta))
}

/// Segment `seg`'s path, where its unindexed records start, and its
/// length.
fn unindexed(
    engine: &LogEngine,
    seg: u32,
    file: &File,
    start: Meta,
) -> Result<(std::path::PathBuf, u64, u64), StoreError> {
    let path = engine.segments.path(seg);
    let from = if seg == start.segment {
        start.offset
    } else {
        0
    };
    let len = file
        .metadata()
        .map_err(|e| StoreError::io("reading size of", &path, e))?
        .len();
    Ok((path, from, len))
}

/// Looks for a record that parses and verifies after `from`: if one
/// exists, the damage at `from` is not a torn tail.
fn find_next_record(file: &File, from: u64, end: u64) -> Option<u64> {
    let mut buf = vec![0u8; (end.saturating_sub(from)).min(256 << 20) as usize];
    file.read_exact_at(&mut buf, from).ok()?;
    find_record(&buf).map(|i| from + i as u64)
}

/// A verified record found by [`Scan`].
struct ScannedRecord {
    key: BlockKey,
    len: usize,
    writer: u32,
    offset: u64,
}

impl ScannedRecord {
    fn location(&self, segment: u32) -> Location {
        Location {
            segment,
            offset: self.offset,
            len: self.len as u32,
        }
    }
}

/// Reads a segment's records in order, checking each one's SHA-1: what
/// both recoveries walk.
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
            reader: BufReader::with_capacity(1 << 20, ReadAt { file, pos: start }),
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

/// Sequential reads through `pread`, so recovery does not disturb the
/// shared file offset.
struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}
