//! Files as trees of blocks. A stream is chunked (`chunk.rs`); each chunk
//! is packed and sealed into a data block; the data blocks' references are
//! gathered into pointer blocks, and those into pointer blocks again, up to
//! a single root reference (`block.rs`). Every block plaintext starts with
//! a kind byte: 0 raw chunk, 1 zstd chunk (both from `chunk.rs`), 2 pointer
//! block: `2 count[2] refs[84 x count]`.

use std::io::{Read, Write};

use eventi_shared::BlockType;

use crate::block::{self, Ref, BLOCK_OVERHEAD};
use crate::chunk;
use crate::store::{BlockStore, StoreError};

const POINTER: u8 = 2;
/// References per pointer block: as many as fit a 56 KiB venti block.
pub const REFS_PER_POINTER: usize = (eventi_shared::MAX_BLOCK_V02 - BLOCK_OVERHEAD - 3) / Ref::LEN;

/// Why a tree could not be written or read. Messages name the block.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A block is not the one its reference names, or does not decrypt.
    #[error(transparent)]
    Block(#[from] block::BlockError),
    /// A block decrypted but is not a valid data or pointer block.
    #[error("block {score} is malformed: {why}")]
    Malformed {
        /// Its score.
        score: eventi_shared::Score,
        /// What is wrong.
        why: String,
    },
    /// Reading the source or writing the output failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

async fn put_sealed(
    store: &impl BlockStore,
    convergence: &[u8; 32],
    plain: &[u8],
) -> Result<Ref, TreeError> {
    let (sealed, r) = block::seal(convergence, plain);
    store.put(BlockType::DATA, sealed).await?;
    Ok(r)
}

/// Stores a stream as a tree; returns its root reference and length.
pub async fn write(
    store: &impl BlockStore,
    convergence: &[u8; 32],
    source: impl Read,
) -> Result<(Ref, u64), TreeError> {
    let mut level: Vec<Ref> = Vec::new();
    let mut len = 0u64;
    for c in chunk::chunks(source) {
        let c = c?;
        len += c.len() as u64;
        level.push(put_sealed(store, convergence, &chunk::pack(&c)).await?);
    }
    if level.is_empty() {
        // The empty stream is one empty data block, so every tree has a root.
        level.push(put_sealed(store, convergence, &chunk::pack(&[])).await?);
    }
    while level.len() > 1 {
        let mut up = Vec::with_capacity(level.len() / REFS_PER_POINTER + 1);
        for group in level.chunks(REFS_PER_POINTER) {
            let mut plain = Vec::with_capacity(3 + group.len() * Ref::LEN);
            plain.push(POINTER);
            plain.extend_from_slice(&(group.len() as u16).to_be_bytes());
            for r in group {
                plain.extend_from_slice(&r.to_bytes());
            }
            up.push(put_sealed(store, convergence, &plain).await?);
        }
        level = up;
    }
    Ok((level[0], len))
}

async fn fetch(store: &impl BlockStore, r: &Ref) -> Result<Vec<u8>, TreeError> {
    let sealed = store.get(r.score, BlockType::DATA).await?;
    Ok(block::open(r, &sealed)?)
}

/// Writes the stream rooted at `root` to `out`, checking every block.
/// Returns the number of bytes written.
pub async fn read(
    store: &impl BlockStore,
    root: &Ref,
    out: &mut impl Write,
) -> Result<u64, TreeError> {
    // Depth-first, left to right, with an explicit stack of pending refs.
    let mut stack = vec![*root];
    let mut written = 0u64;
    while let Some(r) = stack.pop() {
        let plain = fetch(store, &r).await?;
        let malformed = |why: &str| TreeError::Malformed {
            score: r.score,
            why: why.to_string(),
        };
        if plain.first() == Some(&POINTER) {
            if plain.len() < 3 {
                return Err(malformed("truncated pointer block"));
            }
            let count = u16::from_be_bytes([plain[1], plain[2]]) as usize;
            let body = &plain[3..];
            if body.len() != count * Ref::LEN || count == 0 {
                return Err(malformed("pointer count does not match its length"));
            }
            for raw in body.chunks(Ref::LEN).rev() {
                stack.push(Ref::from_bytes(raw).ok_or_else(|| malformed("bad reference"))?);
            }
        } else {
            let data = chunk::unpack(&plain).map_err(|e| malformed(&e.to_string()))?;
            out.write_all(&data)?;
            written += data.len() as u64;
        }
    }
    Ok(written)
}

/// Pointer blocks a tree of `chunks` data blocks needs.
pub fn pointer_blocks_for(chunks: usize) -> usize {
    let mut total = 0;
    let mut n = chunks;
    while n > 1 {
        n = n.div_ceil(REFS_PER_POINTER);
        total += n;
    }
    total
}
