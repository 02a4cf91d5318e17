//! Streams (file data, directory entries) read and written as trees of
//! blocks through a store: the I/O half of `crate::format::tree`, which
//! holds the format itself. Every block read is fetched, opened (its
//! SHA-256 and key checked) and decoded before its bytes are used.

use std::io::{Read, Write};

use bytes::Bytes;
use eventi_shared::{BlockType, Score};

use crate::format::block::{self, Ref};
use crate::format::chunk;
use crate::format::tree::{
    assemble, decode, is_pointer, put_leaf, BlockSink, Leaf, Level, Malformed, Node, TreeWriter,
};
use crate::store::{BlockStore, StoreError};

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
    #[error(transparent)]
    Malformed(#[from] Malformed),
    /// Reading the source or writing the output failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
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
    for e in chunk::extents(source, chunk::seed_for(convergence)) {
        let e = e?;
        len += e.len() as u64;
        for leaf in chunk::pack_extent(&e) {
            tree.push_leaf(sink, put_leaf(sink, convergence, &leaf));
        }
    }
    Ok((tree.finish(sink), len))
}

/// Fetches a block and opens it: its plaintext.
pub fn fetch(store: &dyn BlockStore, r: &Ref) -> Result<Vec<u8>, TreeError> {
    let sealed = store.get_checked(r.score, BlockType::DATA, &r.check)?;
    Ok(block::decrypt_checked(r, &sealed)?)
}

/// Calls `each` with every leaf, in order, together with its bytes when
/// this walk had to fetch them anyway, so a caller can fetch the others
/// in parallel. Pointer and leaf blocks are fetched and checked here. All
/// leaves are at one depth: a leaf block lists its leaves; under an older
/// pointer block, fetching the first child tells what all of its children
/// are, and a tree that breaks that rule fails later, when a pointer block
/// does not unpack as a chunk.
pub fn for_each_leaf(
    store: &dyn BlockStore,
    root: &Ref,
    each: &mut dyn FnMut(Leaf, Option<Vec<u8>>) -> Result<(), TreeError>,
) -> Result<(), TreeError> {
    visit(store, root, fetch(store, root)?, each)
}

fn visit(
    store: &dyn BlockStore,
    r: &Ref,
    plain: Vec<u8>,
    each: &mut dyn FnMut(Leaf, Option<Vec<u8>>) -> Result<(), TreeError>,
) -> Result<(), TreeError> {
    let children = match decode(r, &plain)? {
        Node::Data(d) => return each(Leaf::single(*r, Some(d.len() as u64)), Some(d)),
        Node::Piece(_) => return Err(piece_alone(r)),
        Node::Leaves(leaves) => {
            for l in leaves {
                each(l, None)?;
            }
            return Ok(());
        }
        Node::Pointers(children) => children,
    };
    let first = fetch(store, &children[0].r)?;
    if is_pointer(&first) {
        visit(store, &children[0].r, first, each)?;
        for c in &children[1..] {
            visit(store, &c.r, fetch(store, &c.r)?, each)?;
        }
    } else {
        // A tree from before extents: data blocks right below, one leaf
        // each.
        let leaf = Leaf::single(children[0].r, children[0].size);
        let data = assemble(&leaf, std::slice::from_ref(&first))?;
        each(leaf, Some(data))?;
        for c in &children[1..] {
            each(Leaf::single(c.r, c.size), None)?;
        }
    }
    Ok(())
}

/// The error for a piece of a frame met where a block must stand alone
/// (a root, or a child of a pointer block): only leaf blocks list pieces.
pub fn piece_alone(r: &Ref) -> TreeError {
    TreeError::Malformed(Malformed {
        score: r.score,
        why: "a piece of a frame where a chunk or pointer block was expected".into(),
    })
}

/// Calls `each` with every block of the tree rooted at `root`, pointer
/// and leaf blocks before the blocks below them, data blocks in stream
/// order; every block is fetched, opened and decoded, and every leaf
/// assembled (a check of the whole tree). `each` answers whether to go on;
/// the answer is whether it always did.
pub fn for_each_block(
    store: &dyn BlockStore,
    root: &Ref,
    each: &mut dyn FnMut(Ref, Level) -> Result<bool, TreeError>,
) -> Result<bool, TreeError> {
    match decode(root, &fetch(store, root)?)? {
        Node::Data(_) => each(*root, Level::Data),
        Node::Piece(_) => Err(piece_alone(root)),
        Node::Leaves(leaves) => {
            if !each(*root, Level::Pointer)? {
                return Ok(false);
            }
            for l in &leaves {
                fetch_leaf(store, l)?;
                for b in &l.blocks {
                    if !each(*b, Level::Data)? {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        }
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

/// Calls `each` with the reference of every block of the tree rooted at
/// `root`, pointer blocks included, reading only what it must: the
/// pointer and leaf blocks, and, in trees from before extents, the first
/// child below each pointer block (which says whether its siblings are
/// data or pointers). For finding out which blocks a tree is made of
/// without reading it (`eventi check`, prune's marks, copies).
pub fn for_each_ref(
    store: &dyn BlockStore,
    root: &Ref,
    each: &mut dyn FnMut(Ref, Level),
) -> Result<(), TreeError> {
    let plain = fetch(store, root)?;
    refs_below(store, root, plain, each)
}

fn refs_below(
    store: &dyn BlockStore,
    r: &Ref,
    plain: Vec<u8>,
    each: &mut dyn FnMut(Ref, Level),
) -> Result<(), TreeError> {
    let children = match decode(r, &plain)? {
        Node::Data(_) => {
            each(*r, Level::Data);
            return Ok(());
        }
        Node::Piece(_) => return Err(piece_alone(r)),
        Node::Leaves(leaves) => {
            each(*r, Level::Pointer);
            for b in leaves.iter().flat_map(|l| &l.blocks) {
                each(*b, Level::Data);
            }
            return Ok(());
        }
        Node::Pointers(children) => children,
    };
    each(*r, Level::Pointer);
    let first = fetch(store, &children[0].r)?;
    if is_pointer(&first) {
        refs_below(store, &children[0].r, first, each)?;
        for c in &children[1..] {
            refs_below(store, &c.r, fetch(store, &c.r)?, each)?;
        }
    } else {
        for c in &children {
            each(c.r, Level::Data);
        }
    }
    Ok(())
}

/// Fetches, checks and assembles one leaf: its bytes of stream.
pub fn fetch_leaf(store: &dyn BlockStore, leaf: &Leaf) -> Result<Vec<u8>, TreeError> {
    let plains = leaf
        .blocks
        .iter()
        .map(|b| fetch(store, b))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(assemble(leaf, &plains)?)
}

/// Writes the stream rooted at `root` to `out`, checking every block.
/// Returns the number of bytes written.
pub fn read(store: &dyn BlockStore, root: &Ref, out: &mut dyn Write) -> Result<u64, TreeError> {
    let mut written = 0u64;
    for_each_leaf(store, root, &mut |leaf, data| {
        let data = match data {
            Some(d) => d,
            None => fetch_leaf(store, &leaf)?,
        };
        out.write_all(&data)?;
        written += data.len() as u64;
        Ok(())
    })?;
    Ok(written)
}

/// Writes `len` bytes of the stream rooted at `root`, from `offset` on
/// (fewer if the stream ends first), to `out`; returns how many. In a v2
/// or v3 tree the leaves before `offset` are skipped by their recorded
/// sizes, so the first byte costs one fetch per level; a v1 tree's blocks
/// before it must be fetched to learn their sizes.
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

impl Range {
    /// Skips a leaf of `size` bytes if the range starts after it.
    fn skips(&mut self, size: Option<u64>) -> bool {
        match size {
            Some(size) if self.skip >= size => {
                self.skip -= size;
                true
            }
            _ => false,
        }
    }

    /// Writes the part of a leaf's bytes that the range covers.
    fn take(&mut self, d: &[u8], out: &mut dyn Write) -> std::io::Result<()> {
        let len = d.len() as u64;
        if self.skip >= len {
            self.skip -= len;
            return Ok(());
        }
        let from = self.skip as usize;
        let n = (len - self.skip).min(self.left) as usize;
        out.write_all(&d[from..from + n])?;
        self.skip = 0;
        self.left -= n as u64;
        Ok(())
    }
}

fn read_range_at(
    store: &dyn BlockStore,
    r: &Ref,
    range: &mut Range,
    out: &mut dyn Write,
) -> Result<(), TreeError> {
    match decode(r, &fetch(store, r)?)? {
        Node::Data(d) => range.take(&d, out)?,
        Node::Piece(_) => return Err(piece_alone(r)),
        Node::Leaves(leaves) => {
            for l in &leaves {
                if range.left == 0 {
                    break;
                }
                if !range.skips(l.size) {
                    range.take(&fetch_leaf(store, l)?, out)?;
                }
            }
        }
        Node::Pointers(children) => {
            for c in &children {
                if range.left == 0 {
                    break;
                }
                if !range.skips(c.size) {
                    read_range_at(store, &c.r, range, out)?;
                }
            }
        }
    }
    Ok(())
}

/// Reads a whole (small) stream into memory, calling `each` with the
/// reference of every block of its tree, pointer blocks included: a
/// directory's bytes and the blocks it is made of, in one pass.
pub fn read_all_listing(
    store: &dyn BlockStore,
    root: &Ref,
    each: &mut dyn FnMut(Ref),
) -> Result<Vec<u8>, TreeError> {
    fn collect(
        store: &dyn BlockStore,
        r: &Ref,
        out: &mut Vec<u8>,
        each: &mut dyn FnMut(Ref),
    ) -> Result<(), TreeError> {
        each(*r);
        match decode(r, &fetch(store, r)?)? {
            Node::Data(d) => out.extend_from_slice(&d),
            Node::Piece(_) => return Err(piece_alone(r)),
            Node::Leaves(leaves) => {
                for l in &leaves {
                    l.blocks.iter().for_each(|b| each(*b));
                    out.extend_from_slice(&fetch_leaf(store, l)?);
                }
            }
            Node::Pointers(children) => {
                for c in &children {
                    collect(store, &c.r, out, each)?;
                }
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    collect(store, root, &mut out, each)?;
    Ok(out)
}

/// Reads a whole (small) stream into memory.
pub fn read_all(store: &dyn BlockStore, root: &Ref) -> Result<Vec<u8>, TreeError> {
    let mut out = Vec::new();
    read(store, root, &mut out)?;
    Ok(out)
}
