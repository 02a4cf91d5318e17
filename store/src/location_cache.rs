//! A fixed-size, lock-free cache of where recently written or read blocks
//! live in the data log, in front of the RocksDB index.
//!
//! A RocksDB point lookup walks a memtable skiplist (~20 dependent cache
//! misses); under plan9port's randtest that was 11% of the server's read
//! time. This cache answers with one slot lookup. It needs no locks and
//! may return a wrong location (a colliding score, a slot torn between its
//! two words): callers must check the record they read against the key,
//! which the log engine does for every read anyway (magic, type, length
//! and score in the record header, then SHA-1 of the data), and fall back
//! to the index on any mismatch or error. So the cache can make a read
//! faster, never wrong.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::BlockKey;

/// Where a record was, as the cache remembers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachedLocation {
    /// Segment number.
    pub segment: u32,
    /// Offset of the record header in the segment.
    pub offset: u64,
    /// Data length.
    pub len: u32,
}

/// See the module documentation.
pub struct LocationCache {
    /// Per slot: word 0 = segment (24 bits) | offset (40 bits),
    /// word 1 = length (32 bits) | score tag (32 bits). 0 = empty.
    slots: Box<[[AtomicU64; 2]]>,
    mask: usize,
}

impl LocationCache {
    /// A cache of `entries` slots (rounded up to a power of two; 0 disables it).
    pub fn new(entries: usize) -> LocationCache {
        let n = if entries == 0 {
            0
        } else {
            entries.next_power_of_two()
        };
        let slots = (0..n)
            .map(|_| [AtomicU64::new(0), AtomicU64::new(0)])
            .collect();
        LocationCache {
            slots,
            mask: n.saturating_sub(1),
        }
    }

    fn slot_and_tag(&self, key: &BlockKey) -> Option<(usize, u32)> {
        if self.slots.is_empty() {
            return None;
        }
        let s = key.score.as_bytes();
        // Scores are uniform: their bytes are already a good hash.
        let h = u64::from_le_bytes(s[0..8].try_into().expect("8 bytes"))
            ^ key.block_type.to_wire() as u64;
        let tag = u32::from_le_bytes(s[8..12].try_into().expect("4 bytes"));
        Some((h as usize & self.mask, tag))
    }

    /// Remembers where `key` is. Locations beyond the packing's range
    /// (segment >= 2^24 or offset >= 2^40) are not cached.
    pub fn insert(&self, key: &BlockKey, loc: CachedLocation) {
        let Some((i, tag)) = self.slot_and_tag(key) else {
            return;
        };
        if loc.segment >= 1 << 24 || loc.offset >= 1 << 40 {
            return;
        }
        let w0 = ((loc.segment as u64) << 40) | loc.offset;
        let w1 = ((loc.len as u64) << 32) | tag as u64;
        let slot = &self.slots[i];
        slot[0].store(w0, Ordering::Relaxed);
        slot[1].store(w1, Ordering::Relaxed);
    }

    /// Forgets where `key` was (it is gone, or moved), if its slot holds it.
    pub fn forget(&self, key: &BlockKey) {
        let Some((i, tag)) = self.slot_and_tag(key) else {
            return;
        };
        let slot = &self.slots[i];
        if slot[1].load(Ordering::Relaxed) as u32 == tag {
            slot[1].store(0, Ordering::Relaxed);
        }
    }

    /// Where `key` may be. A hint only: see the module documentation.
    pub fn get(&self, key: &BlockKey) -> Option<CachedLocation> {
        let (i, tag) = self.slot_and_tag(key)?;
        let slot = &self.slots[i];
        let w1 = slot[1].load(Ordering::Relaxed);
        let w0 = slot[0].load(Ordering::Relaxed);
        if w1 == 0 || w1 as u32 != tag {
            return None;
        }
        Some(CachedLocation {
            segment: (w0 >> 40) as u32,
            offset: w0 & ((1 << 40) - 1),
            len: (w1 >> 32) as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventi_shared::{BlockType, Score};

    fn key(n: u32) -> BlockKey {
        BlockKey {
            score: Score::of(&n.to_le_bytes()),
            block_type: BlockType::DATA,
        }
    }

    #[test]
    fn remembers_and_forgets_by_slot() {
        let c = LocationCache::new(1000);
        let loc = CachedLocation {
            segment: 3,
            offset: 123_456_789,
            len: 8192,
        };
        assert_eq!(c.get(&key(1)), None);
        c.insert(&key(1), loc);
        assert_eq!(c.get(&key(1)), Some(loc));
        // Another key is (almost surely) not answered from this slot.
        assert_eq!(c.get(&key(2)), None);
        // Out-of-range locations are not cached.
        c.insert(
            &key(3),
            CachedLocation {
                segment: 1 << 24,
                offset: 0,
                len: 1,
            },
        );
        assert_eq!(c.get(&key(3)), None);
    }

    #[test]
    fn a_disabled_cache_answers_nothing() {
        let c = LocationCache::new(0);
        c.insert(
            &key(1),
            CachedLocation {
                segment: 0,
                offset: 0,
                len: 1,
            },
        );
        assert_eq!(c.get(&key(1)), None);
    }
}
