//! Files as trees of blocks. A stream is cut into extents and each
//! extent packed into the blocks of one or more *leaves* (`chunk.rs`):
//! a leaf is the bytes of stream one reader gets back whole, from one
//! block (a raw or compressed chunk) or from the pieces of one zstd frame.
//! The leaves are listed by leaf blocks, and those gathered by pointer
//! blocks, up to a single root reference (`block.rs`). Every block
//! plaintext starts with a kind byte:
//!
//! - 0 raw chunk, 1 zstd chunk, 6 piece of a frame (`chunk.rs`);
//! - 7 leaf block (format v3): `7 count[2] {size[8] n[1] ref[84] x n} x
//!   count`, each leaf with its bytes of stream and its `n` blocks, all of
//!   which are listed here, so that the blocks a tree is made of are known
//!   without fetching its data, and any offset is reached in one fetch
//!   per level (`stream::read_range`);
//! - 3 pointer block (format v2): `3 count[2] {ref[84] size[8]} x count`,
//!   each reference with the bytes of stream below it. It gathers leaf
//!   blocks (or pointer blocks) in trees written since extents; in trees
//!   written before, it gathered data blocks directly, one leaf each.
//! - 2 v1 pointer block, `2 count[2] ref[84] x count`, without sizes:
//!   still read, never written.
//!
//! All leaves are at one depth. A stream whose one leaf is one chunk has
//! that block as its root; the empty stream is one empty data block.
//! [`TreeWriter`] builds the tree while streaming, so a file of any size
//! needs memory only for one partial block per level.
//!
//! This module is the format alone, bytes in and out; reading and
//! writing trees through a store is the `stream` module.

use bytes::Bytes;
use eventi_shared::Score;

use crate::format::block::{self, Ref, BLOCK_OVERHEAD};
use crate::format::chunk::{self, Unpacked};

/// Kind byte of a v1 pointer block (references only).
const POINTER_V1: u8 = 2;
/// Kind byte of a v2 pointer block (references with sizes).
const POINTER: u8 = 3;
/// Kind byte of a leaf block (leaves with their blocks).
const LEAVES: u8 = 7;
/// Bytes of one v2 pointer entry: a reference and a size.
const CHILD_LEN: usize = Ref::LEN + 8;
/// Largest block plaintext: a sealed block fits 56 KiB.
const MAX_PLAIN: usize = eventi_shared::MAX_BLOCK_V02 - BLOCK_OVERHEAD;
/// References per pointer block: as many as fit a 56 KiB venti block.
pub const REFS_PER_POINTER: usize = (MAX_PLAIN - 3) / CHILD_LEN;

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

/// Seals the blocks of one packed leaf and hands them to `sink`: the leaf
/// as a tree lists it.
pub fn put_leaf(sink: &dyn BlockSink, convergence: &[u8; 32], leaf: &chunk::PackedLeaf) -> Leaf {
    Leaf {
        size: Some(leaf.size as u64),
        blocks: leaf
            .blocks
            .iter()
            .map(|plain| put_sealed(sink, convergence, plain))
            .collect(),
    }
}

/// One leaf of a tree: the blocks that together hold `size` bytes of
/// stream (one chunk, or the pieces of one frame).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Bytes of stream it holds (`None` under a v1 pointer block, which
    /// does not record them).
    pub size: Option<u64>,
    /// Its blocks, in order: never empty.
    pub blocks: Vec<Ref>,
}

impl Leaf {
    /// A leaf of one block.
    pub fn single(r: Ref, size: Option<u64>) -> Leaf {
        Leaf {
            size,
            blocks: vec![r],
        }
    }

    /// Whether it is one block that decodes alone: a chunk (or, under a
    /// pointer block from before extents, which records no size or a
    /// chunk's, any data block). A piece never is: only extents above
    /// [`chunk::MAX_CHUNK`] are framed.
    pub fn is_one_chunk(&self) -> bool {
        self.blocks.len() == 1 && self.size.is_none_or(|s| s <= u64::from(chunk::MAX_CHUNK))
    }

    /// Bytes of its entry in a leaf block.
    fn encoded_len(&self) -> usize {
        9 + self.blocks.len() * Ref::LEN
    }
}

/// Builds a tree from its leaves, in order.
pub struct TreeWriter {
    convergence: [u8; 32],
    /// Leaves not yet in a leaf block, and their entries' bytes.
    leaves: Vec<Leaf>,
    leaf_bytes: usize,
    /// Pending references per level above the leaves (level 0: leaf
    /// blocks), with the stream bytes below each.
    levels: Vec<Vec<Child>>,
    count: u64,
}

impl TreeWriter {
    /// A tree whose blocks are sealed under `convergence`.
    pub fn new(convergence: &[u8; 32]) -> TreeWriter {
        TreeWriter {
            convergence: *convergence,
            leaves: Vec::new(),
            leaf_bytes: 3,
            levels: vec![Vec::new()],
            count: 0,
        }
    }

    /// Appends a leaf of one block; `len` is its chunk's length.
    pub fn push(&mut self, sink: &dyn BlockSink, r: Ref, len: usize) {
        self.push_leaf(sink, Leaf::single(r, Some(len as u64)));
    }

    /// Appends the next leaf (its size recorded).
    pub fn push_leaf(&mut self, sink: &dyn BlockSink, leaf: Leaf) {
        debug_assert!(leaf.size.is_some() && !leaf.blocks.is_empty());
        self.count += 1;
        if self.leaf_bytes + leaf.encoded_len() > MAX_PLAIN {
            self.seal_leaves(sink);
        }
        self.leaf_bytes += leaf.encoded_len();
        self.leaves.push(leaf);
    }

    fn seal_leaves(&mut self, sink: &dyn BlockSink) {
        let leaves = std::mem::take(&mut self.leaves);
        self.leaf_bytes = 3;
        let up = Child {
            r: put_sealed(sink, &self.convergence, &encode_leaves(&leaves)),
            size: Some(leaves.iter().map(|l| l.size.unwrap_or(0)).sum()),
        };
        self.push_at(sink, 0, up);
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
        if self.count == 0 {
            return put_sealed(sink, &self.convergence, &chunk::pack(&[]));
        }
        if self.levels[0].is_empty() && self.leaves.len() == 1 && self.leaves[0].is_one_chunk() {
            // One chunk: its block is the root.
            return self.leaves[0].blocks[0];
        }
        if !self.leaves.is_empty() {
            self.seal_leaves(sink);
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
#[derive(Debug)]
pub enum Node {
    /// A whole chunk of the stream.
    Data(Vec<u8>),
    /// One piece of a leaf's frame: see [`assemble`].
    Piece(Vec<u8>),
    /// A pointer block: the blocks below, in order.
    Pointers(Vec<Child>),
    /// A leaf block: the leaves below, in order.
    Leaves(Vec<Leaf>),
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

/// The plaintext of a leaf block over `leaves` (each with a size).
pub fn encode_leaves(leaves: &[Leaf]) -> Vec<u8> {
    let mut plain = Vec::with_capacity(3 + leaves.iter().map(Leaf::encoded_len).sum::<usize>());
    plain.push(LEAVES);
    plain.extend_from_slice(&(leaves.len() as u16).to_be_bytes());
    for l in leaves {
        plain.extend_from_slice(&l.size.unwrap_or(0).to_be_bytes());
        plain.push(l.blocks.len() as u8);
        for b in &l.blocks {
            plain.extend_from_slice(&b.to_bytes());
        }
    }
    plain
}

/// Whether a block plaintext is a pointer or leaf block (of any version).
pub fn is_pointer(plain: &[u8]) -> bool {
    matches!(
        plain.first(),
        Some(&POINTER) | Some(&POINTER_V1) | Some(&LEAVES)
    )
}

/// Decodes a block plaintext fetched by `r`.
pub fn decode(r: &Ref, plain: &[u8]) -> Result<Node, Malformed> {
    let malformed = |why: &str| Malformed {
        score: r.score,
        why: why.to_string(),
    };
    if !is_pointer(plain) {
        return match chunk::unpack(plain) {
            Ok(Unpacked::Chunk(d)) => Ok(Node::Data(d)),
            Ok(Unpacked::Piece(p)) => Ok(Node::Piece(p)),
            Err(e) => Err(malformed(&e.to_string())),
        };
    }
    if plain.len() < 3 {
        return Err(malformed("truncated pointer block"));
    }
    let count = u16::from_be_bytes([plain[1], plain[2]]) as usize;
    let body = &plain[3..];
    if count == 0 {
        return Err(malformed("an empty pointer block"));
    }
    if plain[0] == LEAVES {
        return decode_leaves(body, count)
            .map(Node::Leaves)
            .ok_or_else(|| malformed("leaf entries do not match the block's length or limits"));
    }
    let sized = plain[0] == POINTER;
    let entry = if sized { CHILD_LEN } else { Ref::LEN };
    if body.len() != count * entry {
        return Err(malformed("pointer count does not match its length"));
    }
    body.chunks(entry)
        .map(|raw| {
            let r = Ref::from_bytes(&raw[..Ref::LEN]).ok_or_else(|| malformed("bad reference"))?;
            let size =
                sized.then(|| u64::from_be_bytes(raw[Ref::LEN..].try_into().expect("8 bytes")));
            Ok(Child { r, size })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Node::Pointers)
}

/// A leaf block's entries, if they are well formed: every leaf holds 1 to
/// MAX_EXTENT bytes in 1 to MAX_PIECES blocks, and nothing trails them.
fn decode_leaves(mut body: &[u8], count: usize) -> Option<Vec<Leaf>> {
    let mut leaves = Vec::with_capacity(count);
    for _ in 0..count {
        let size = u64::from_be_bytes(body.get(..8)?.try_into().ok()?);
        let n = *body.get(8)? as usize;
        if size == 0 || size > u64::from(chunk::MAX_EXTENT) || n == 0 || n > chunk::MAX_PIECES {
            return None;
        }
        let refs = body.get(9..9 + n * Ref::LEN)?;
        let blocks = refs
            .chunks(Ref::LEN)
            .map(Ref::from_bytes)
            .collect::<Option<Vec<_>>>()?;
        leaves.push(Leaf {
            size: Some(size),
            blocks,
        });
        body = &body[9 + n * Ref::LEN..];
    }
    body.is_empty().then_some(leaves)
}

/// The stream bytes of `leaf` from its blocks' plaintexts, in order:
/// one chunk, or the pieces of one frame, which must decode to the size
/// the leaf records.
pub fn assemble(leaf: &Leaf, plains: &[Vec<u8>]) -> Result<Vec<u8>, Malformed> {
    let malformed = |why: String| Malformed {
        score: leaf.blocks[0].score,
        why,
    };
    let mut frame = Vec::new();
    for (r, plain) in leaf.blocks.iter().zip(plains) {
        match decode(r, plain)? {
            Node::Data(d) if leaf.blocks.len() == 1 => {
                return match leaf.size {
                    Some(size) if size != d.len() as u64 => Err(malformed(format!(
                        "a chunk of {} bytes where its pointer block says {size}",
                        d.len()
                    ))),
                    _ => Ok(d),
                };
            }
            Node::Piece(p) => frame.extend_from_slice(&p),
            _ => return Err(malformed("a leaf mixes pieces with other blocks".into())),
        }
    }
    let size = leaf
        .size
        .ok_or_else(|| malformed("a frame without a recorded size".into()))?;
    chunk::unframe(&frame, size).map_err(|e| malformed(e.to_string()))
}

/// What a block is in a tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// A pointer or leaf block: references to the blocks below.
    Pointer,
    /// A data block: a chunk of the stream, or a piece of one.
    Data,
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
            other => panic!("a pointer block decoded as {other:?}"),
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
            other => panic!("a v1 pointer block decoded as {other:?}"),
        }
        assert_eq!(REFS_PER_POINTER, 623);
    }

    /// The leaf block is pinned (docs/FORMAT.md): a leaf of 5 bytes in
    /// one block of bytes 0x11, and a leaf of 2^20 bytes in two pieces of
    /// bytes 0x22 and 0x33.
    #[test]
    fn leaf_block_golden_bytes() {
        let r = |b: u8| Ref::from_bytes(&[b; Ref::LEN]).unwrap();
        let leaves = [
            Leaf::single(r(0x11), Some(5)),
            Leaf {
                size: Some(1 << 20),
                blocks: vec![r(0x22), r(0x33)],
            },
        ];
        let plain = encode_leaves(&leaves);
        let mut want = vec![7, 0, 2];
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 5, 1]);
        want.extend_from_slice(&[0x11; Ref::LEN]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0, 2]);
        want.extend_from_slice(&[0x22; Ref::LEN]);
        want.extend_from_slice(&[0x33; Ref::LEN]);
        assert_eq!(plain, want);
        match decode(&r(1), &plain).unwrap() {
            Node::Leaves(back) => assert_eq!(back, leaves),
            other => panic!("a leaf block decoded as {other:?}"),
        }
        // Truncated, trailing bytes, a leaf above the extent limit, no
        // blocks, too many blocks: each refused.
        let mut bad = vec![
            plain[..plain.len() - 1].to_vec(),
            [&plain[..], &[0]].concat(),
        ];
        let mut too_big = plain.clone();
        too_big[3..11].copy_from_slice(&(u64::from(chunk::MAX_EXTENT) + 1).to_be_bytes());
        bad.push(too_big);
        let mut zero = plain.clone();
        zero[11] = 0;
        bad.push(zero);
        let mut many = vec![7, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, chunk::MAX_PIECES as u8 + 1];
        many.extend(std::iter::repeat_n(
            0x44,
            Ref::LEN * (chunk::MAX_PIECES + 1),
        ));
        bad.push(many);
        for b in bad {
            assert!(decode(&r(1), &b).is_err(), "{b:?}");
        }
    }

    /// Blocks kept in memory.
    #[derive(Default)]
    struct Memory(std::sync::Mutex<std::collections::HashMap<Score, Vec<u8>>>);

    impl BlockSink for Memory {
        fn put_block(&self, score: Score, sealed: Bytes) {
            self.0.lock().unwrap().insert(score, sealed.to_vec());
        }
    }

    impl Memory {
        fn open(&self, r: &Ref) -> Vec<u8> {
            let sealed = self.0.lock().unwrap()[&r.score].clone();
            block::decrypt_checked(r, &sealed).unwrap()
        }
    }

    /// Leaf blocks fill by bytes, whatever the leaves' block counts, and
    /// stay within a venti block; sizes add up through pointer blocks.
    #[test]
    fn leaf_blocks_fill_by_bytes_and_sizes_add_up() {
        let sink = Memory::default();
        let secret = [9u8; 32];
        let mut tree = TreeWriter::new(&secret);
        let r = |i: u32| put_sealed(&sink, &secret, &chunk::pack(&i.to_be_bytes()));
        let mut total = 0u64;
        for i in 0..2000u32 {
            let n = 1 + (i % 4) as usize;
            let leaf = Leaf {
                size: Some(u64::from(i) + 1),
                blocks: (0..n as u32).map(|k| r(i * 8 + k)).collect(),
            };
            total += u64::from(i) + 1;
            tree.push_leaf(&sink, leaf);
        }
        let root = tree.finish(&sink);
        let Node::Pointers(tops) = decode(&root, &sink.open(&root)).unwrap() else {
            panic!("2000 leaves need a pointer block above their leaf blocks");
        };
        assert_eq!(tops.iter().map(|c| c.size.unwrap()).sum::<u64>(), total);
        let mut leaves = 0;
        for c in &tops {
            let plain = sink.open(&c.r);
            assert!(plain.len() <= MAX_PLAIN);
            let Node::Leaves(l) = decode(&c.r, &plain).unwrap() else {
                panic!("a leaf block below");
            };
            assert_eq!(
                l.iter().map(|l| l.size.unwrap()).sum::<u64>(),
                c.size.unwrap()
            );
            leaves += l.len();
        }
        assert_eq!(leaves, 2000);
        assert!(tops.len() >= 8, "{} leaf blocks", tops.len());
    }
}
