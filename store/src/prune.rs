//! Giving space back, per writer: mark what is still needed, then let go
//! of the rest (`docs/STORAGE.md`, "Reclaiming space").
//!
//! A writer's references carry the time it last stored (or marked) each
//! block (`refs.rs`). A prune of writer W:
//! 1. **begin** records the marking start `since` (and raises the
//!    reference clock's floor to it, so no later stamp is older);
//! 2. **mark** ([`hold`]) stamps W's reference to each block W still
//!    needs with the time now (taking one if W held none and the block is
//!    stored), and says which blocks are stored at all;
//! 3. **commit** first raises W's epoch (durably, before anything is
//!    dropped, so that a backup which started earlier learns of it), then
//!    drops every reference of W stamped before `min(since, now - grace)`.
//!    A block left with no holder is dead: its key goes, its bytes become
//!    reclaimable (compaction gives them back) and its payer's usage goes
//!    down; a block others still hold whose payer was W is charged to the
//!    lowest-numbered remaining holder instead (table `Payers`).
//!
//! Every step that reads holders and deletes runs with block commits held
//! off (the committer's lock), so a block stored again while it is being
//! let go is either held by its new writer or stored anew.

use std::collections::HashMap;

use rocksdb::{IteratorMode, WriteBatch};

use crate::engine::Engine;
use crate::keyspace::Table;
pub use eventi_shared::codec::prune::PruneCommitted;

use crate::{refs, BlockKey, StoreError};

/// The record id of the store's space counters in table `Prune`.
const SPACE: &[u8] = b"space";

/// Candidates let go of per step with block commits held off.
pub const STEP: usize = 16_384;

/// Bytes a block's log record takes beyond its data (what compaction
/// gives back along with it).
const RECORD_OVERHEAD: u64 = 32;

/// One writer's prune state (table `Prune`, id writer[4]):
/// `epoch[8] since[8] reclaimed_bytes[8] reclaimed_blocks[8] last_commit[8]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneState {
    /// Raised by every commit: caches built in an older epoch may name
    /// blocks that are gone.
    pub epoch: u64,
    /// When the marking in progress began (Unix seconds; 0: none).
    pub since: u64,
    /// Bytes this writer stopped paying for, over all its prunes.
    pub reclaimed_bytes: u64,
    /// Blocks it stopped paying for.
    pub reclaimed_blocks: u64,
    /// When its last commit ended (Unix seconds; 0: never).
    pub last_commit: u64,
}

impl PruneState {
    fn encode(&self) -> [u8; 40] {
        let mut v = [0u8; 40];
        for (i, n) in [
            self.epoch,
            self.since,
            self.reclaimed_bytes,
            self.reclaimed_blocks,
            self.last_commit,
        ]
        .iter()
        .enumerate()
        {
            v[i * 8..i * 8 + 8].copy_from_slice(&n.to_be_bytes());
        }
        v
    }

    fn decode(v: &[u8]) -> Option<PruneState> {
        let at = |i: usize| {
            Some(u64::from_be_bytes(
                v.get(i * 8..i * 8 + 8)?.try_into().ok()?,
            ))
        };
        Some(PruneState {
            epoch: at(0)?,
            since: at(1)?,
            reclaimed_bytes: at(2)?,
            reclaimed_blocks: at(3)?,
            last_commit: at(4)?,
        })
    }
}

/// The store's space counters (table `Prune`, id `space`):
/// `reclaimable[8] reclaimed[8]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpaceCounters {
    /// Bytes of dead blocks still on disk (compaction will free them).
    pub reclaimable: u64,
    /// Bytes compaction has freed, over the store's life.
    pub reclaimed: u64,
}

impl SpaceCounters {
    fn encode(&self) -> [u8; 16] {
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&self.reclaimable.to_be_bytes());
        v[8..].copy_from_slice(&self.reclaimed.to_be_bytes());
        v
    }

    fn decode(v: &[u8]) -> Option<SpaceCounters> {
        Some(SpaceCounters {
            reclaimable: u64::from_be_bytes(v.get(..8)?.try_into().ok()?),
            reclaimed: u64::from_be_bytes(v.get(8..16)?.try_into().ok()?),
        })
    }
}

/// The prune state of `writer`.
pub(crate) fn state(engine: &dyn Engine, writer: u32) -> Result<PruneState, StoreError> {
    Ok(engine
        .get_record(Table::Prune, &writer.to_be_bytes())?
        .and_then(|v| PruneState::decode(&v))
        .unwrap_or_default())
}

fn put_state(engine: &dyn Engine, writer: u32, s: &PruneState) -> Result<(), StoreError> {
    engine.put_record(Table::Prune, &writer.to_be_bytes(), Some(&s.encode()))
}

/// The store's space counters.
pub(crate) fn space(engine: &dyn Engine) -> Result<SpaceCounters, StoreError> {
    Ok(engine
        .index()
        .get_record(Table::Prune, SPACE)?
        .and_then(|v| SpaceCounters::decode(&v))
        .unwrap_or_default())
}

/// Adds to the space counters (reclaimable may go down: `reclaimable` is
/// signed), durably.
pub(crate) fn count_space(
    engine: &dyn Engine,
    reclaimable: i64,
    reclaimed: u64,
) -> Result<(), StoreError> {
    let mut s = space(engine)?;
    s.reclaimable = s.reclaimable.saturating_add_signed(reclaimable);
    s.reclaimed += reclaimed;
    engine
        .index()
        .put_record(Table::Prune, SPACE, Some(&s.encode()))
}

/// Raises the reference clock's floor to the latest marking start of any
/// writer (at open: a clock stepped back across a restart must not stamp
/// references older than a marking in progress).
pub(crate) fn restore_floor(engine: &dyn Engine) -> Result<(), StoreError> {
    for (_, v) in engine.scan_records(Table::Prune)? {
        if let Some(s) = PruneState::decode(&v) {
            refs::raise_floor(s.since);
        }
    }
    Ok(())
}

/// Step 1: starts (or starts over) the marking of `writer`.
pub(crate) fn begin(engine: &dyn Engine, writer: u32) -> Result<PruneState, StoreError> {
    engine.index().refuse_if_read_only()?;
    if !engine.reclaims() {
        return Err(StoreError::CannotReclaim);
    }
    let mut s = state(engine, writer)?;
    s.since = refs::now();
    refs::raise_floor(s.since);
    put_state(engine, writer, &s)?;
    Ok(s)
}

/// Step 2 (and a backup's way to take hold of blocks it did not send):
/// stamps `writer`'s reference to each of `keys` that is stored with the
/// time now, and says which are stored. Made durable by the next sync.
/// Run with block commits held off.
pub(crate) fn hold(
    engine: &dyn Engine,
    writer: u32,
    keys: &[BlockKey],
) -> Result<Vec<bool>, StoreError> {
    let mut present = Vec::with_capacity(keys.len());
    let mut held = Vec::new();
    for key in keys {
        let stored = key.score.is_zero() || engine.contains(key)?;
        if stored && !key.score.is_zero() {
            held.push((*key, writer));
        }
        present.push(stored);
    }
    engine.add_refs(&held)?;
    Ok(present)
}

/// Step 3, first part: checks that `writer` is marking, runs the caller's
/// `check` (the server: the key's heads are still those the marking
/// walked), and raises the epoch durably. Run with block commits held
/// off and, on a server, with head sets held off too.
pub(crate) fn open_commit(
    engine: &dyn Engine,
    writer: u32,
    check: &mut dyn FnMut() -> Result<(), String>,
) -> Result<PruneState, StoreError> {
    engine.index().refuse_if_read_only()?;
    if !engine.reclaims() {
        return Err(StoreError::CannotReclaim);
    }
    let mut s = state(engine, writer)?;
    if s.since == 0 {
        return Err(StoreError::PruneRefused(
            "no marking in progress for this key (begin one first)".into(),
        ));
    }
    // Marks went through the WAL; make them durable before anything is
    // judged by them.
    engine.index().sync_wal()?;
    s.epoch += 1;
    if engine.shares_records() {
        // Another process may set a head meanwhile, holding no lock of
        // this one: the epoch goes up first and the heads are read after
        // it, while a head set checks the epoch after setting the head
        // (and takes it back if it moved), so one of the two sees the
        // other. A refused commit puts the epoch back: nothing was let
        // go, and a head refused meanwhile is only sent again.
        put_state(engine, writer, &s)?;
        if let Err(why) = check() {
            s.epoch -= 1;
            put_state(engine, writer, &s)?;
            return Err(StoreError::PruneRefused(why));
        }
    } else {
        check().map_err(StoreError::PruneRefused)?;
        put_state(engine, writer, &s)?;
    }
    Ok(s)
}

/// The blocks `writer` holds by a reference stamped before `cutoff`.
/// Reads a snapshot of the database; the steps look again.
pub(crate) fn candidates(
    engine: &dyn Engine,
    writer: u32,
    cutoff: u64,
) -> Result<Vec<BlockKey>, StoreError> {
    let db = engine.index().db();
    let prefix = Table::Refs.prefix();
    let mut out = Vec::new();
    let mode = IteratorMode::From(prefix, rocksdb::Direction::Forward);
    for item in db.iterator(mode) {
        let (k, v) = item?;
        if !k.starts_with(prefix) {
            break;
        }
        let Some((key, w)) = refs::parse_ref_key(&k) else {
            continue;
        };
        if w == writer && refs::parse_time(&v).is_some_and(|t| t < cutoff) {
            out.push(key);
        }
    }
    Ok(out)
}

/// Step 3, one step: lets go of `writer`'s references to `keys` that are
/// still stamped before `cutoff`. Run with block commits held off.
pub(crate) fn release(
    engine: &dyn Engine,
    writer: u32,
    cutoff: u64,
    keys: &[BlockKey],
    outcome: &mut PruneCommitted,
) -> Result<(), StoreError> {
    let _own_commits = engine.hold_commits();
    release_held(engine, writer, cutoff, keys, outcome)
}

/// [`release`] for a caller that holds the engine's own commits off
/// already (an engine applying another process's release).
pub(crate) fn release_held(
    engine: &dyn Engine,
    writer: u32,
    cutoff: u64,
    keys: &[BlockKey],
    outcome: &mut PruneCommitted,
) -> Result<(), StoreError> {
    engine.before_release()?;
    let index = engine.index();
    let db = index.db();
    let mut batch = WriteBatch::default();
    let mut deltas: HashMap<u32, (i64, i64)> = HashMap::new();
    let mut meta = index.meta();
    let mut dead = Vec::new();
    let mut dead_record_bytes = 0u64;
    for key in keys {
        let ref_key = refs::ref_key(key, writer);
        let Some(stamp) = db.get(&ref_key)?.and_then(|v| refs::parse_time(&v)) else {
            continue;
        };
        if stamp >= cutoff {
            continue;
        }
        batch.delete(&ref_key);
        outcome.released += 1;
        let others: Vec<u32> = refs::holders(db, key)?
            .into_iter()
            .map(|(w, _)| w)
            .filter(|w| *w != writer)
            .collect();
        let Some(len) = engine.stored_len(key)? else {
            continue;
        };
        let payer_key = Table::Payers.key(&key.to_bytes());
        // Without a `Payers` entry the payer is the block's first writer,
        // which then still holds it (a first writer that lets go of a block
        // others hold leaves an entry; one that lets go of a block nobody
        // else holds kills it). So a block this writer alone held is its
        // own, and only a block others hold needs its log record read.
        let payer = match db.get(&payer_key)? {
            Some(v) => v.as_slice().try_into().ok().map(u32::from_be_bytes),
            None if others.is_empty() => Some(writer),
            None => engine.first_writer(key)?,
        };
        let bytes = len as i64;
        match others.iter().min() {
            None => {
                engine.bury(key, &mut batch)?;
                batch.delete(key.to_bytes());
                batch.delete(&payer_key);
                if let Some(p) = payer {
                    let d = deltas.entry(p).or_default();
                    d.0 -= bytes;
                    d.1 -= 1;
                }
                meta.blocks = meta.blocks.saturating_sub(1);
                meta.bytes = meta.bytes.saturating_sub(len);
                outcome.dead_blocks += 1;
                outcome.dead_bytes += len;
                dead_record_bytes += len + RECORD_OVERHEAD;
                dead.push(*key);
            }
            Some(&next) if payer == Some(writer) => {
                batch.put(&payer_key, next.to_be_bytes());
                let d = deltas.entry(writer).or_default();
                d.0 -= bytes;
                d.1 -= 1;
                let d = deltas.entry(next).or_default();
                d.0 += bytes;
                d.1 += 1;
                outcome.moved_blocks += 1;
                outcome.moved_bytes += len;
            }
            Some(_) => {}
        }
    }
    if batch.is_empty() {
        return Ok(());
    }
    let mut space = space(engine)?;
    space.reclaimable += dead_record_bytes;
    batch.put(Table::Prune.key(SPACE), space.encode());
    index.write_release(batch, &deltas, meta)?;
    engine.released(&dead);
    Ok(())
}

/// Step 3, last part: ends the marking and records what was reclaimed.
pub(crate) fn close_commit(
    engine: &dyn Engine,
    writer: u32,
    outcome: &PruneCommitted,
) -> Result<(), StoreError> {
    let mut s = state(engine, writer)?;
    s.since = 0;
    s.last_commit = refs::now();
    s.reclaimed_bytes += outcome.dead_bytes + outcome.moved_bytes;
    s.reclaimed_blocks += outcome.dead_blocks + outcome.moved_blocks;
    put_state(engine, writer, &s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records are pinned (docs/FORMAT.md).
    #[test]
    fn state_and_space_records_round_trip() {
        let s = PruneState {
            epoch: 3,
            since: 1_700_000_000,
            reclaimed_bytes: 4096,
            reclaimed_blocks: 2,
            last_commit: 1_700_000_100,
        };
        let v = s.encode();
        assert_eq!(
            hex::encode(v),
            "0000000000000003000000006553f10000000000000010000000000000000002000000006553f164"
        );
        assert_eq!(PruneState::decode(&v), Some(s));
        assert_eq!(PruneState::decode(&v[..39]), None);
        let c = SpaceCounters {
            reclaimable: 1,
            reclaimed: 2,
        };
        assert_eq!(SpaceCounters::decode(&c.encode()), Some(c));
    }
}
