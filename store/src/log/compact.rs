//! Compaction of the data log: segments that are mostly dead have their
//! live records copied, byte for byte, to the log's tail, and are then
//! removed.
//!
//! Crash-safe at every step:
//! - a copy is appended and its index entry moved in one commit, like a
//!   new block's (no WAL; the meta record says how far the log is
//!   indexed), and an entry is moved only if it still points at the
//!   record copied (a block let go or moved meanwhile keeps its state);
//! - a crash before that commit is durable leaves the copy in the tail,
//!   which start-up re-indexes (`recover`): the entry then points at the
//!   copy, which is as good as the original;
//! - the old segment is removed only after the log is synced and the
//!   index flushed, so no durable entry points into it; a crash before
//!   the removal leaves a segment with nothing live, which the next pass
//!   removes without copying. Space is never leaked for ever: every byte
//!   of a segment that is neither live nor removed is counted dead and
//!   compacted in its turn.

use std::collections::HashMap;
use std::io::IoSlice;
use std::time::{Duration, Instant};

use rocksdb::WriteBatch;

use super::record::{record_data, Location};
use super::segments::{pwrite_all, read_record};
use super::LogEngine;
use crate::compact::{CompactOptions, CompactReport, Exclusive};
use crate::index::Wal;
use crate::{BlockKey, StoreError};

/// Record bytes copied per step with block commits held off.
const CHUNK_BYTES: u64 = 4 << 20;

/// Dead bytes a segment must hold on disk before holes are punched in it.
const PUNCH_MIN: u64 = 64 << 10;

/// Live bytes, size and bytes on disk of one segment.
#[derive(Clone, Copy, Debug, Default)]
struct SegmentUse {
    live: u64,
    size: u64,
    allocated: u64,
}

/// One compaction pass over the whole log.
pub fn compact(
    engine: &LogEngine,
    options: &CompactOptions,
    exclusive: &Exclusive<'_>,
) -> Result<CompactReport, StoreError> {
    engine.index.refuse_if_read_only()?;
    let mut report = CompactReport::default();
    let mut usage: HashMap<u32, SegmentUse> = HashMap::new();
    let numbers: Vec<u32> = engine
        .segments
        .from(0)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for (n, file) in engine.segments.from(0) {
        let meta = file
            .metadata()
            .map_err(|e| StoreError::io("reading size of", &engine.segments.path(n), e))?;
        usage.insert(
            n,
            SegmentUse {
                live: 0,
                size: meta.len(),
                allocated: std::os::unix::fs::MetadataExt::blocks(&meta) * 512,
            },
        );
    }
    scan_live(engine, &mut |_, loc| {
        if let Some(u) = usage.get_mut(&loc.segment) {
            u.live += loc.record_len() as u64;
        }
    })?;
    report.segments = numbers.len() as u64;
    let victims: Vec<u32> = numbers
        .iter()
        .copied()
        .filter(|n| {
            let u = usage[n];
            u.size > 0 && (u.live as f64) < options.live_below * u.size as f64
        })
        .collect();
    // The rest of the indexed log keeps its records where they are; the
    // dead ones' disk blocks are given back by punching holes.
    let indexed = engine.index.meta();
    let punches: Vec<u32> = numbers
        .iter()
        .copied()
        .filter(|n| !victims.contains(n) && *n <= indexed.segment)
        .filter(|n| usage[n].allocated > usage[n].live + PUNCH_MIN)
        .collect();
    if victims.is_empty() && punches.is_empty() {
        return Ok(report);
    }
    // The tail may be a victim: start a new segment so it is not
    // appended to while its records move out.
    if victims.contains(&engine.segments.last().0) {
        exclusive(&mut || {
            let mut w = engine.writer.lock().expect("writer lock");
            engine.roll(&mut w)
        })?;
    }
    let mut records: HashMap<u32, Vec<(BlockKey, Location)>> = HashMap::new();
    scan_live(engine, &mut |key, loc| {
        if victims.contains(&loc.segment) || punches.contains(&loc.segment) {
            records.entry(loc.segment).or_default().push((key, loc));
        }
    })?;
    for &n in &punches {
        if options.stopped() {
            return Ok(report);
        }
        let mut list = records.remove(&n).unwrap_or_default();
        list.sort_by_key(|(_, loc)| loc.offset);
        // Only what is indexed for good: the tail's records past the meta
        // record may still be re-indexed by recovery.
        let limit = if n == indexed.segment {
            indexed.offset
        } else {
            usage[&n].size
        };
        // Small live runs between two dead stretches are copied out first,
        // so that the stretches become one hole.
        let moving = small_runs(&list, limit);
        if !moving.is_empty() {
            for chunk in chunks(&moving) {
                report.bytes_copied += copy_chunk(engine, n, chunk, exclusive)?;
                report.blocks_copied += chunk.len() as u64;
            }
            // The old places are punched only once nothing durable points
            // there.
            exclusive(&mut || engine.make_index_durable())?;
            let moved: std::collections::HashSet<u64> =
                moving.iter().map(|(_, loc)| loc.offset).collect();
            list.retain(|(_, loc)| !moved.contains(&loc.offset));
        }
        let Some(freed) = punch_dead(engine, n, &list, limit)? else {
            break;
        };
        report.punched += 1;
        report.bytes_freed += freed;
        crate::prune::count_space(engine, -(freed as i64), freed)?;
        tracing::info!(
            segment = n,
            freed,
            "punched the dead records of a log segment"
        );
    }
    let pace = Pace::new(options.bytes_per_second);
    for n in victims {
        let mut list = records.remove(&n).unwrap_or_default();
        list.sort_by_key(|(_, loc)| loc.offset);
        let mut copied = 0u64;
        for chunk in chunks(&list) {
            if options.stopped() {
                return Ok(report);
            }
            let bytes = copy_chunk(engine, n, chunk, exclusive)?;
            copied += bytes;
            report.blocks_copied += chunk.len() as u64;
            pace.wait(report.bytes_copied + copied);
        }
        report.bytes_copied += copied;
        // Nothing durable may point into the segment when it goes.
        exclusive(&mut || engine.make_index_durable())?;
        let size = usage[&n].size;
        engine.segments.remove(n)?;
        report.removed += 1;
        let freed = size.saturating_sub(copied);
        report.bytes_freed += freed;
        crate::prune::count_space(engine, -(freed as i64), freed)?;
        tracing::info!(segment = n, size, copied, freed, "compacted a log segment");
    }
    Ok(report)
}

/// Live runs (records with no dead byte between them) at most this long,
/// with dead records on both sides, are copied out before punching: a
/// run shares its first and last filesystem blocks with the dead records
/// around it, which only its moving lets go.
const MOVE_MAX: u64 = 64 << 10;

/// The records of the small live runs between dead stretches of `live`
/// (sorted by offset) below `limit`.
fn small_runs(live: &[(BlockKey, Location)], limit: u64) -> Vec<(BlockKey, Location)> {
    let below: Vec<&(BlockKey, Location)> = live.iter().filter(|(_, l)| l.offset < limit).collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut dead_before = below.first().is_some_and(|(_, l)| l.offset > 0);
    while i < below.len() {
        let start = below[i].1.offset;
        let mut end = start + below[i].1.record_len() as u64;
        let mut j = i + 1;
        while j < below.len() && below[j].1.offset == end {
            end += below[j].1.record_len() as u64;
            j += 1;
        }
        let next = below.get(j).map_or(limit, |(_, l)| l.offset);
        let dead_after = next > end;
        if dead_before && dead_after && end - start <= MOVE_MAX {
            out.extend(below[i..j].iter().map(|r| **r));
        }
        dead_before = dead_after;
        i = j;
    }
    out
}

/// Punches holes over the dead records of segment `n` below `limit`
/// (between the live records `live`, sorted by offset), in whole
/// filesystem blocks; returns the bytes the file gave back, or `None` if
/// the filesystem cannot punch holes (copying forward is then the only
/// way). Idempotent: a crash leaves holes punched or not, never a live
/// byte touched.
fn punch_dead(
    engine: &LogEngine,
    n: u32,
    live: &[(BlockKey, Location)],
    limit: u64,
) -> Result<Option<u64>, StoreError> {
    use std::os::fd::AsRawFd;
    const ALIGN: u64 = 4096;
    let path = engine.segments.path(n);
    let Some((_, file)) = engine.segments.from(n).into_iter().find(|(m, _)| *m == n) else {
        return Ok(Some(0));
    };
    let allocated = |f: &std::fs::File| -> Result<u64, StoreError> {
        let meta = f
            .metadata()
            .map_err(|e| StoreError::io("reading size of", &path, e))?;
        Ok(std::os::unix::fs::MetadataExt::blocks(&meta) * 512)
    };
    let before = allocated(&file)?;
    let mut gaps = Vec::new();
    let mut end = 0u64;
    for (_, loc) in live {
        if loc.offset >= limit {
            break;
        }
        gaps.push((end, loc.offset));
        end = end.max(loc.offset + loc.record_len() as u64);
    }
    gaps.push((end, limit));
    for (from, to) in gaps {
        let (start, stop) = (from.div_ceil(ALIGN) * ALIGN, to / ALIGN * ALIGN);
        if stop <= start {
            continue;
        }
        // SAFETY: fallocate on an open descriptor of ours, within its size.
        let r = unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                start as libc::off_t,
                (stop - start) as libc::off_t,
            )
        };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
                tracing::warn!(segment = %path.display(), "this filesystem cannot punch holes: only segments compacted by copying give space back");
                return Ok(None);
            }
            return Err(StoreError::io("punching holes in", &path, e));
        }
    }
    Ok(Some(before.saturating_sub(allocated(&file)?)))
}

/// Calls `visit` with every indexed block and its location.
fn scan_live(
    engine: &LogEngine,
    visit: &mut dyn FnMut(BlockKey, Location),
) -> Result<(), StoreError> {
    let db = engine.index.db();
    for item in db.iterator(rocksdb::IteratorMode::Start) {
        let (k, v) = item?;
        let Some(key) = BlockKey::from_bytes(&k) else {
            continue;
        };
        if let Some(loc) = Location::decode(&v) {
            visit(key, loc);
        }
    }
    Ok(())
}

/// Splits a segment's live records into steps of about [`CHUNK_BYTES`].
fn chunks(list: &[(BlockKey, Location)]) -> Vec<&[(BlockKey, Location)]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, (_, loc)) in list.iter().enumerate() {
        bytes += loc.record_len() as u64;
        if bytes >= CHUNK_BYTES {
            out.push(&list[start..=i]);
            start = i + 1;
            bytes = 0;
        }
    }
    if start < list.len() {
        out.push(&list[start..]);
    }
    out
}

/// Copies one step's records of segment `n` to the tail and moves their
/// index entries; returns the record bytes copied.
fn copy_chunk(
    engine: &LogEngine,
    n: u32,
    chunk: &[(BlockKey, Location)],
    exclusive: &Exclusive<'_>,
) -> Result<u64, StoreError> {
    let path = engine.segments.path(n);
    let mut copies: Vec<(BlockKey, Location, Vec<u8>)> = Vec::with_capacity(chunk.len());
    for (key, loc) in chunk {
        let file = engine.segments.get(key, *loc)?;
        let buf = read_record(&file, *loc, false)
            .map_err(|e| StoreError::io("reading", &path, e))?
            .expect("a blocking read always completes");
        // The header must be the block's; the bytes go over unchanged.
        record_data(key, *loc, buf.clone())?;
        copies.push((*key, *loc, buf));
    }
    let mut copied = 0u64;
    exclusive(&mut || {
        let mut w = engine.writer.lock().expect("writer lock");
        let total: u64 = copies.iter().map(|c| c.2.len() as u64).sum();
        engine.roll_if_full(&mut w, total)?;
        let mut batch = WriteBatch::default();
        let mut offset = w.len;
        let mut moved = Vec::with_capacity(copies.len());
        for (key, old, buf) in &copies {
            let new = Location {
                segment: w.segment,
                offset,
                len: old.len,
            };
            offset += buf.len() as u64;
            let current = engine.index.get(key)?.and_then(|v| Location::decode(&v));
            if current == Some(*old) {
                batch.put(key.to_bytes(), new.encode());
                moved.push((*key, new));
            }
        }
        let mut slices: Vec<IoSlice<'_>> = copies.iter().map(|c| IoSlice::new(&c.2)).collect();
        if let Err(e) = pwrite_all(&w.file, &mut slices, w.len) {
            let _ = w.file.set_len(w.len);
            return Err(StoreError::io("appending to", &w.path, e));
        }
        let mut meta = engine.index.meta();
        meta.segment = w.segment;
        meta.offset = offset;
        engine.index.commit(batch, [], meta, Wal::Off)?;
        for (key, loc) in moved {
            engine.remember(&key, loc);
        }
        copied = offset - w.len;
        w.len = offset;
        Ok(())
    })?;
    Ok(copied)
}

/// Keeps copying at no more than a set rate.
struct Pace {
    start: Instant,
    rate: Option<u64>,
}

impl Pace {
    fn new(rate: Option<u64>) -> Pace {
        Pace {
            start: Instant::now(),
            rate,
        }
    }

    /// Sleeps until `bytes` copied since the start is within the rate.
    fn wait(&self, bytes: u64) {
        let Some(rate) = self.rate.filter(|r| *r > 0) else {
            return;
        };
        let due = Duration::from_secs_f64(bytes as f64 / rate as f64);
        if let Some(left) = due.checked_sub(self.start.elapsed()) {
            std::thread::sleep(left);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventi_shared::{BlockType, Score};

    fn rec(i: u8, offset: u64, len: u32) -> (BlockKey, Location) {
        let key = BlockKey {
            score: Score::of(&[i]),
            block_type: BlockType::DATA,
        };
        let loc = Location {
            segment: 0,
            offset,
            len: len - super::super::record::HEADER_LEN as u32,
        };
        (key, loc)
    }

    /// Only runs with dead bytes on both sides and at most `MOVE_MAX`
    /// long move; nothing at or past the limit does.
    #[test]
    fn small_runs_between_dead_stretches_are_chosen() {
        let live = [
            rec(1, 0, 1000),    // starts the segment: nothing dead before
            rec(2, 5000, 2000), // a run of two, dead on both sides
            rec(3, 7000, 2000),
            rec(4, 20_000, 100_000), // too long
            rec(5, 130_000, 3000),   // dead before, and after up to the limit
            rec(6, 200_000, 1000),   // past the limit
        ];
        let keys: Vec<u8> = small_runs(&live, 150_000)
            .iter()
            .map(|(k, _)| live.iter().position(|(l, _)| l == k).unwrap() as u8 + 1)
            .collect();
        assert_eq!(keys, [2, 3, 5]);
        // A run that ends exactly at the limit has no dead stretch after it.
        assert!(small_runs(&[rec(7, 100, 900)], 1000).is_empty());
    }
}
