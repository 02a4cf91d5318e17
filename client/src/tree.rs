//! Files as trees of blocks. A stream is chunked (`chunk.rs`); each chunk
//! is packed and sealed into a data block; the data blocks' references are
//! gathered into pointer blocks, and those into pointer blocks again, up to
//! a single root reference (`block.rs`). Every block plaintext starts with
//! a kind byte: 0 raw chunk, 1 zstd chunk (both from `chunk.rs`), 3
//! pointer block (format v2): `3 count[2] {ref[84] size[8]} x count`, each
//! reference with the bytes of stream below it, so that any offset is
//! reached in one fetch per level ([`read_range`]). Kind 2 is the v1
//! pointer block, `2 count[2] ref[84] x count`, without sizes: still read,
//! never written.
//!
//! The shape is fixed by the number of chunks alone: level 0 is the data
//! blocks, and each level above groups the one below, in order, into
//! pointer blocks of [`REFS_PER_POINTER`], until one reference is left. A
//! one-chunk stream's root is its data block; the empty stream is one
//! empty data block. [`TreeWriter`] builds that shape while streaming, so
//! a file of any size needs memory only for one partial block per level.

use std::io::{Read, Write};

use bytes::Bytes;
use eventi_shared::{BlockType, Score};

use crate::block::{self, Ref, BLOCK_OVERHEAD};
use crate::chunk;
use crate::store::{BlockStore, StoreError};

/// Kind byte of a v1 pointer block (references only).
const POINTER_V1: u8 = 2;
/// Kind byte of a v2 pointer block (references with sizes).
const POINTER: u8 = 3;
/// Bytes of one v2 pointer entry: a reference and a size.
const CHILD_LEN: usize = Ref::LEN + 8;
/// References per pointer block: as many as fit a 56 KiB venti block.
pub const REFS_PER_POINTER: usize = (eventi_shared::MAX_BLOCK_V02 - BLOCK_OVERHEAD - 3) / CHILD_LEN;

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
        score: Score,
        /// What is wrong.
        why: String,
    },
    /// Reading the source or writing the output failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
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

/// A sink that puts straight into a store and remembers the first error.
pub struct StoreSink<'a> {
    store: &'a dyn BlockStore,
    error: std::sync::Arc<std::sync::Mutex<Option<StoreError>>>,
}

impl<'a> StoreSink<'a> {
    /// Puts into `store`.
    pub fn new(store: &'a dyn BlockStore) -> StoreSink<'a> {
        StoreSink {
            store,
            error: Default::default(),
        }
    }

    /// Syncs the store and returns the first error of any put.
    pub fn finish(self) -> Result<(), StoreError> {
        self.store.sync()?;
        match self.error.lock().expect("sink error").take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl BlockSink for StoreSink<'_> {
    fn put_block(&self, _score: Score, sealed: Bytes) {
        let error = std::sync::Arc::clone(&self.error);
        self.store.put(
            BlockType::DATA,
            sealed,
            Box::new(move |r| {
                if let Err(e) = r {
                    error.lock().expect("sink error").get_or_insert(e);
                }
            }),
        );
    }
}

/// Stores a stream as a tree (single-threaded); returns its root and length.
pub fn write(
    sink: &dyn BlockSink,
    convergence: &[u8; 32],
    source: impl Read,
) -> Result<(Ref, u64), TreeError> {
    let mut tree = TreeWriter::new(convergence);
    let mut len = 0u64;
    for c in chunk::chunks(source, chunk::seed_for(convergence)) {
        let c = c?;
        len += c.len() as u64;
        let r = put_sealed(sink, convergence, &chunk::pack(&c));
        tree.push(sink, r, c.len());
    }
    Ok((tree.finish(sink), len))
}

/// Fetches a block and opens it: its plaintext.
pub fn fetch(store: &dyn BlockStore, r: &Ref) -> Result<Vec<u8>, TreeError> {
    let sealed = store.get_checked_by_caller(r.score, BlockType::DATA)?;
    Ok(block::open(r, &sealed)?)
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

fn is_pointer(plain: &[u8]) -> bool {
    matches!(plain.first(), Some(&POINTER) | Some(&POINTER_V1))
}

/// Decodes a block plaintext fetched by `r`: data, or a pointer block of
/// either version.
pub fn decode(r: &Ref, plain: &[u8]) -> Result<Node, TreeError> {
    let malformed = |why: &str| TreeError::Malformed {
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

/// Calls `each` with every data block's reference, in order, together
/// with its chunk when this walk had to fetch it anyway, so a caller can
/// fetch the others in parallel. Pointer blocks are fetched and checked
/// here. All data blocks are at one depth, so fetching the first child of
/// a pointer block tells what all of its children are; a tree that breaks
/// that rule fails later, when a pointer block does not unpack as a chunk.
pub fn for_each_leaf(
    store: &dyn BlockStore,
    root: &Ref,
    each: &mut dyn FnMut(Ref, Option<Vec<u8>>) -> Result<(), TreeError>,
) -> Result<(), TreeError> {
    visit(store, root, fetch(store, root)?, each)
}

fn visit(
    store: &dyn BlockStore,
    r: &Ref,
    plain: Vec<u8>,
    each: &mut dyn FnMut(Ref, Option<Vec<u8>>) -> Result<(), TreeError>,
) -> Result<(), TreeError> {
    let refs: Vec<Ref> = match decode(r, &plain)? {
        Node::Data(d) => return each(*r, Some(d)),
        Node::Pointers(children) => children.iter().map(|c| c.r).collect(),
    };
    let first = fetch(store, &refs[0])?;
    if is_pointer(&first) {
        visit(store, &refs[0], first, each)?;
        for c in &refs[1..] {
            visit(store, c, fetch(store, c)?, each)?;
        }
        Ok(())
    } else {
        match decode(&refs[0], &first)? {
            Node::Data(d) => each(refs[0], Some(d))?,
            Node::Pointers(_) => unreachable!("checked above"),
        }
        for c in &refs[1..] {
            each(*c, None)?;
        }
        Ok(())
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

/// Calls `each` with every block of the tree rooted at `root`, pointer
/// blocks before the blocks below them, data blocks in stream order;
/// every block is fetched, opened and decoded (a check of the whole tree).
/// `each` answers whether to go on; the answer is whether it always did.
pub fn for_each_block(
    store: &dyn BlockStore,
    root: &Ref,
    each: &mut dyn FnMut(Ref, Level) -> Result<bool, TreeError>,
) -> Result<bool, TreeError> {
    match decode(root, &fetch(store, root)?)? {
        Node::Data(_) => each(*root, Level::Data),
        Node::Pointers(children) => {
            if !each(*root, Level::Pointer)? {
                return Ok(false);
            }
            for c in &children {
                if !for_each_block(store, &c.r, each)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
    }
}

/// Fetches, checks and unpacks one data block.
pub fn fetch_chunk(store: &dyn BlockStore, r: &Ref) -> Result<Vec<u8>, TreeError> {
    match decode(r, &fetch(store, r)?)? {
        Node::Data(d) => Ok(d),
        Node::Pointers(_) => Err(TreeError::Malformed {
            score: r.score,
            why: "a pointer block where data was expected".into(),
        }),
    }
}

/// Writes the stream rooted at `root` to `out`, checking every block.
/// Returns the number of bytes written.
pub fn read(store: &dyn BlockStore, root: &Ref, out: &mut dyn Write) -> Result<u64, TreeError> {
    let mut written = 0u64;
    for_each_leaf(store, root, &mut |r, data| {
        let data = match data {
            Some(d) => d,
            None => fetch_chunk(store, &r)?,
        };
        out.write_all(&data)?;
        written += data.len() as u64;
        Ok(())
    })?;
    Ok(written)
}

/// Writes `len` bytes of the stream rooted at `root`, from `offset` on
/// (fewer if the stream ends first), to `out`; returns how many. In a v2
/// tree the blocks before `offset` are skipped by their recorded sizes,
/// so the first byte costs one fetch per level; a v1 tree's blocks before
/// it must be fetched to learn their sizes.
pub fn read_range(
    store: &dyn BlockStore,
    root: &Ref,
    offset: u64,
    len: u64,
    out: &mut dyn Write,
) -> Result<u64, TreeError> {
    let mut range = Range {
        skip: offset,
        left: len,
    };
    read_range_at(store, root, &mut range, out)?;
    Ok(len - range.left)
}

/// What [`read_range`] has still to skip and to write.
struct Range {
    skip: u64,
    left: u64,
}

fn read_range_at(
    store: &dyn BlockStore,
    r: &Ref,
    range: &mut Range,
    out: &mut dyn Write,
) -> Result<(), TreeError> {
    match decode(r, &fetch(store, r)?)? {
        Node::Data(d) => {
            let len = d.len() as u64;
            if range.skip >= len {
                range.skip -= len;
                return Ok(());
            }
            let from = range.skip as usize;
            let n = (len - range.skip).min(range.left) as usize;
            out.write_all(&d[from..from + n])?;
            range.skip = 0;
            range.left -= n as u64;
        }
        Node::Pointers(children) => {
            for c in &children {
                if range.left == 0 {
                    break;
                }
                match c.size {
                    Some(size) if range.skip >= size => range.skip -= size,
                    _ => read_range_at(store, &c.r, range, out)?,
                }
            }
        }
    }
    Ok(())
}

/// Reads a whole (small) stream into memory.
pub fn read_all(store: &dyn BlockStore, root: &Ref) -> Result<Vec<u8>, TreeError> {
    let mut out = Vec::new();
    read(store, root, &mut out)?;
    Ok(out)
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
