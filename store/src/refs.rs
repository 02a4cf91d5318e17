//! Which writers hold each block: one record per (block, writer), written
//! whenever a writer stores the block, new or already there, so that space
//! can later be given back only when no writer needs a block any more
//! (`docs/STORAGE.md`, "Reclaiming space"). `prune.rs` drops them.
//!
//! A reference is `Refs` + score[20] type[1] writer[4] -> time[8] (Unix
//! seconds of the last store). Writer 0 is anonymous; [`LEGACY`] holds
//! every block stored before references were kept, because who else
//! stored those is not known.
//!
//! Durability follows the block's: a new block's reference goes in its
//! index batch (and is re-made from the log record's writer by crash
//! recovery); a duplicate's goes through RocksDB's WAL, synced by the
//! next Tsync, before the writer is told its block is durable.

use rocksdb::{IteratorMode, WriteBatch, DB};

use crate::keyspace::Table;
use crate::{BlockKey, StoreError};

/// The holder of every block stored before references were kept.
pub const LEGACY: u32 = u32::MAX;

/// The `Features` record saying references are kept for every block.
pub const FEATURE: &[u8] = b"refs";

/// The database key of the reference of `writer` to `key`.
pub fn ref_key(key: &BlockKey, writer: u32) -> Vec<u8> {
    let mut id = key.to_bytes().to_vec();
    id.extend_from_slice(&writer.to_be_bytes());
    Table::Refs.key(&id)
}

/// Adds (or renews) the reference of `writer` to `key` to `batch`.
pub fn put(batch: &mut WriteBatch, key: &BlockKey, writer: u32, now: u64) {
    batch.put(ref_key(key, writer), now.to_be_bytes());
}

/// Every holder of `key` with the time of its last store, by writer.
pub fn holders(db: &DB, key: &BlockKey) -> Result<Vec<(u32, u64)>, StoreError> {
    let prefix = Table::Refs.key(&key.to_bytes());
    let mut out = Vec::new();
    let mode = IteratorMode::From(&prefix, rocksdb::Direction::Forward);
    for item in db.iterator(mode) {
        let (k, v) = item?;
        let Some(rest) = k.strip_prefix(prefix.as_slice()) else {
            break;
        };
        let (Ok(writer), Some(time)) = (<[u8; 4]>::try_from(rest), parse_time(&v)) else {
            continue;
        };
        out.push((u32::from_be_bytes(writer), time));
    }
    Ok(out)
}

/// The earliest time [`now`] may answer: a prune's marking start, so
/// that a clock stepped back never stamps a reference as older than the
/// marking it was made during (which would let the prune drop it).
static FLOOR: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Unix seconds now, never earlier than a marking start seen.
pub fn now() -> u64 {
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    clock.max(FLOOR.load(std::sync::atomic::Ordering::SeqCst))
}

/// Makes [`now`] answer `at` or later from here on.
pub fn raise_floor(at: u64) {
    FLOOR.fetch_max(at, std::sync::atomic::Ordering::SeqCst);
}

/// The (block, writer) of a reference's database key.
pub fn parse_ref_key(k: &[u8]) -> Option<(BlockKey, u32)> {
    let rest = Table::Refs.id_of(k)?;
    if rest.len() != BlockKey::LEN + 4 {
        return None;
    }
    let key = BlockKey::from_bytes(&rest[..BlockKey::LEN])?;
    let writer = u32::from_be_bytes(rest[BlockKey::LEN..].try_into().ok()?);
    Some((key, writer))
}

/// The time of a reference's value.
pub fn parse_time(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

/// Gives every block of a store made before references were kept a
/// [`LEGACY`] reference, in batches, and then records the feature; a
/// store that has it already, or holds no block, only gets the record.
/// Interrupted, it starts over at the next open (references are
/// idempotent).
pub fn migrate(db: &DB) -> Result<u64, StoreError> {
    if db.get(Table::Features.key(FEATURE))?.is_some() {
        return Ok(0);
    }
    let now = now();
    // Without the WAL, then one flush: a WAL file would be preallocated
    // at the write buffer's size (tens of MB), which a nearly full disk
    // may not have, and the flush makes all of it durable at once.
    let mut wo = rocksdb::WriteOptions::default();
    wo.disable_wal(true);
    let mut batch = WriteBatch::default();
    let mut given = 0u64;
    for item in db.iterator(IteratorMode::Start) {
        let (k, _) = item?;
        let Some(key) = BlockKey::from_bytes(&k) else {
            continue;
        };
        put(&mut batch, &key, LEGACY, now);
        given += 1;
        if batch.len() >= 10_000 {
            db.write_opt(std::mem::take(&mut batch), &wo)?;
        }
    }
    batch.put(Table::Features.key(FEATURE), b"1");
    db.write_opt(batch, &wo)?;
    let mut fo = rocksdb::FlushOptions::default();
    fo.set_wait(true);
    db.flush_opt(&fo)?;
    Ok(given)
}
