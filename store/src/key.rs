//! What the store keeps blocks by, and what a write hands it.

use bytes::Bytes;
use eventi_shared::{BlockType, Score};

/// The key of a block: its score and its wire type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockKey {
    /// SHA-1 of the block.
    pub score: Score,
    /// Wire type; the same bytes under two types are two blocks.
    pub block_type: BlockType,
}

impl BlockKey {
    /// Bytes in an encoded key: score then type.
    pub const LEN: usize = Score::LEN + 1;

    /// The key as stored in RocksDB.
    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let mut k = [0u8; Self::LEN];
        k[..Score::LEN].copy_from_slice(self.score.as_bytes());
        k[Score::LEN] = self.block_type.to_wire();
        k
    }

    /// Parses a stored key; `None` for keys that are not block keys.
    pub fn from_bytes(k: &[u8]) -> Option<BlockKey> {
        if k.len() != Self::LEN {
            return None;
        }
        Some(BlockKey {
            score: Score::from_slice(&k[..Score::LEN])?,
            block_type: BlockType::from_wire(k[Score::LEN])?,
        })
    }
}

/// A block about to be stored; its score was computed from `data`.
#[derive(Clone, Debug)]
pub struct NewBlock {
    /// Where it will be found.
    pub key: BlockKey,
    /// Its bytes.
    pub data: Bytes,
    /// The write key that sends it (0 = anonymous), charged if it is new.
    pub writer: u32,
}

impl NewBlock {
    /// The block holding `data` under `block_type`, its score computed here.
    pub fn of(block_type: BlockType, data: Bytes, writer: u32) -> NewBlock {
        NewBlock {
            key: BlockKey {
                score: Score::of(&data),
                block_type,
            },
            data,
            writer,
        }
    }
}

/// The anonymous writer: sessions that never authenticated.
pub const ANONYMOUS: u32 = 0;
