//! Files as trees of blocks. A stream is chunked (`chunk.rs`); each chunk
//! is packed and sealed into a data block; the data blocks' references are
//! gathered into pointer blocks, and those into pointer blocks again, up to
//! a single root reference (`block.rs`). Every block plaintext starts with
//! a kind byte: 0 raw chunk, 1 zstd chunk (both from `chunk.rs`), 3
//! pointer block (format v2): `3 count[2] {ref[84] size[8]} x count`, each
//! reference with the bytes of stream below it, so that any offset is
//! reached in one fetch per level (`stream::read_range`). Kind 2 is the v1
//! pointer block, `2 count[2] ref[84] x count`, without sizes: still read,
//! never written.
//!
//! The shape is fixed by the number of chunks alone: level 0 is the data
//! blocks, and each level above groups the one below, in order, into
//! pointer blocks of [`REFS_PER_POINTER`], until one reference is left. A
//! one-chunk stream's root is its data block; the empty stream is one
//! empty data block. [`TreeWriter`] builds that shape while streaming, so
//! a file of any size needs memory only for one partial block per level.

//!
//! This module is the format alone, bytes in and out; reading and
//! writing trees through a store is the `stream` module.

use bytes::Bytes;
use eventi_shared::Score;

use crate::format::block::{self, Ref, BLOCK_OVERHEAD};
use crate::format::chunk;

/// Kind byte of a v1 pointer block (references only).
const POINTER_V1: u8 = 2;
/// Kind byte of a v2 pointer block (references with sizes).
const POINTER: u8 = 3;
/// Bytes of one v2 pointer entry: a reference and a size.
const CHILD_LEN: usize = Ref::LEN + 8;
/// References per pointer block: as many as fit a 56 KiB venti block.
pub const REFS_PER_POINTER: usize = (eventi_shared::MAX_BLOCK_V02 - BLOCK_OVERHEAD - 3) / CHILD_LEN;

/// A block that decrypted but is not a valid data or pointer block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("block {score} is malformed: {why}")]
pub struct Malformed {
    /// Its score.
    pub score: Score,
    /// What is wrong.
    pub why: String,
}

/// Where sealed blocks go while a tree is written. Implementations store
/// them (or skip ones known to be stored) and report failures their own way.
pub trait BlockSink {
    /// Stores one sealed block named by `score`.
    fn put_block(&self, score: Score, sealed: Bytes);
}

/// Seals a block plaintext and hands it to `sink`.
pub fn put_sealed(sink: &dyn BlockSink, convergence: &[u8; 32], plain: &[u8]) -> Ref {
    let (sealed, r) = block::seal(convergence, plain);
    sink.put_block(r.score, sealed);
    r
}

/// Builds a tree from its data blocks' references, in order.
pub struct TreeWriter {
    convergence: [u8; 32],
    /// Pending references per level, with the stream bytes below each
    /// (level 0: data blocks).
    levels: Vec<Vec<Child>>,
    chunks: u64,
}

impl TreeWriter {
    /// A tree whose blocks are sealed under `convergence`.
    pub fn new(convergence: &[u8; 32]) -> TreeWriter {
        TreeWriter {
            convergence: *convergence,
            levels: vec![Vec::new()],
            chunks: 0,
        }
    }

    /// Appends the next data block's reference; `len` is its chunk's length.
    pub fn push(&mut self, sink: &dyn BlockSink, r: Ref, len: usize) {
        self.chunks += 1;
        let child = Child {
            r,
            size: Some(len as u64),
        };
        self.push_at(sink, 0, child);
    }

    fn push_at(&mut self, sink: &dyn BlockSink, level: usize, child: Child) {
        if self.levels.len() == level {
            self.levels.push(Vec::new());
        }
        self.levels[level].push(child);
        if self.levels[level].len() == REFS_PER_POINTER {
            let group = std::mem::take(&mut self.levels[level]);
            let up = self.seal_pointer(sink, &group);
            self.push_at(sink, level + 1, up);
        }
    }

    fn seal_pointer(&self, sink: &dyn BlockSink, group: &[Child]) -> Child {
        let plain = encode_pointer(group);
        Child {
            r: put_sealed(sink, &self.convergence, &plain),
            size: Some(group.iter().map(|c| c.size.unwrap_or(0)).sum()),
        }
    }

    /// Seals what is pending and returns the root.
    pub fn finish(mut self, sink: &dyn BlockSink) -> Ref {
        if self.chunks == 0 {
            return put_sealed(sink, &self.convergence, &chunk::pack(&[]));
        }
        let mut level = 0;
        loop {
            let above_empty = self.levels[level + 1..].iter().all(|l| l.is_empty());
            let pending = std::mem::take(&mut self.levels[level]);
            if above_empty && pending.len() == 1 {
                return pending[0].r;
            }
            if !pending.is_empty() {
                let up = self.seal_pointer(sink, &pending);
                if self.levels.len() == level + 1 {
                    self.levels.push(Vec::new());
                }
                self.levels[level + 1].push(up);
            }
            level += 1;
        }
    }
}

/// One entry of a pointer block: a block below, and the bytes of stream
/// under it (`None` in a v1 pointer block, which does not record them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Child {
    /// The block below.
    pub r: Ref,
    /// Stream bytes under it, if recorded.
    pub size: Option<u64>,
}

/// What a block of a tree holds.
pub enum Node {
    /// File data.
    Data(Vec<u8>),
    /// The blocks below, in order.
    Pointers(Vec<Child>),
}

/// The plaintext of a v2 pointer block over `children` (each with a size).
pub fn encode_pointer(children: &[Child]) -> Vec<u8> {
    let mut plain = Vec::with_capacity(3 + children.len() * CHILD_LEN);
    plain.push(POINTER);
    plain.extend_from_slice(&(children.len() as u16).to_be_bytes());
    for c in children {
        plain.extend_from_slice(&c.r.to_bytes());
        plain.extend_from_slice(&c.size.unwrap_or(0).to_be_bytes());
    }
    plain
}

/// Whether a block plaintext is a pointer block (of either version).
pub fn is_pointer(plain: &[u8]) -> bool {
    matches!(plain.first(), Some(&POINTER) | Some(&POINTER_V1))
}

/// Decodes a block plaintext fetched by `r`: data, or a pointer block of
/// either version.
pub fn decode(r: &Ref, plain: &[u8]) -> Result<Node, Malformed> {
    let malformed = |why: &str| Malformed {
        score: r.score,
        why: why.to_string(),
    };
    if is_pointer(plain) {
        if plain.len() < 3 {
            return Err(malformed("truncated pointer block"));
        }
        let sized = plain[0] == POINTER;
        let entry = if sized { CHILD_LEN } else { Ref::LEN };
        let count = u16::from_be_bytes([plain[1], plain[2]]) as usize;
        let body = &plain[3..];
        if body.len() != count * entry || count == 0 {
            return Err(malformed("pointer count does not match its length"));
        }
        body.chunks(entry)
            .map(|raw| {
                let r =
                    Ref::from_bytes(&raw[..Ref::LEN]).ok_or_else(|| malformed("bad reference"))?;
                let size =
                    sized.then(|| u64::from_be_bytes(raw[Ref::LEN..].try_into().expect("8 bytes")));
                Ok(Child { r, size })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Node::Pointers)
    } else {
        chunk::unpack(plain)
            .map(Node::Data)
            .map_err(|e| malformed(&e.to_string()))
    }
}

/// What a block is in a tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// A pointer block: references to the blocks below.
    Pointer,
    /// A data block: a chunk of the stream.
    Data,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The v2 pointer block is pinned (docs/FORMAT.md): two children,
    /// references of bytes 0x11 and 0x22, sizes 5 and 2^32.
    #[test]
    fn pointer_block_golden_bytes() {
        let child = |b: u8, size: u64| Child {
            r: Ref::from_bytes(&[b; Ref::LEN]).unwrap(),
            size: Some(size),
        };
        let children = [child(0x11, 5), child(0x22, 1 << 32)];
        let plain = encode_pointer(&children);
        let mut want = vec![3, 0, 2];
        want.extend_from_slice(&[0x11; Ref::LEN]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 5]);
        want.extend_from_slice(&[0x22; Ref::LEN]);
        want.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(plain, want);
        let r = children[0].r;
        match decode(&r, &plain).unwrap() {
            Node::Pointers(back) => assert_eq!(back, children),
            Node::Data(_) => panic!("a pointer block decoded as data"),
        }
        // The same references in a v1 block: no sizes.
        let mut v1 = vec![2, 0, 2];
        v1.extend_from_slice(&[0x11; Ref::LEN]);
        v1.extend_from_slice(&[0x22; Ref::LEN]);
        match decode(&r, &v1).unwrap() {
            Node::Pointers(back) => {
                assert_eq!(
                    back.iter().map(|c| c.size).collect::<Vec<_>>(),
                    [None, None]
                )
            }
            Node::Data(_) => panic!("a v1 pointer block decoded as data"),
        }
        assert_eq!(REFS_PER_POINTER, 623);
    }
}
