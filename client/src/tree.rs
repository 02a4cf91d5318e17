//! Files as trees of blocks. A stream is chunked (`chunk.rs`); each chunk
//! is packed and sealed into a data block; the data blocks' references are
//! gathered into pointer blocks, and those into pointer blocks again, up to
//! a single root reference (`block.rs`). Every block plaintext starts with
//! a kind byte: 0 raw chunk, 1 zstd chunk (both from `chunk.rs`), 2 pointer
//! block: `2 count[2] refs[84 x count]`.
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
    /// Pending references per level (level 0: data blocks).
    levels: Vec<Vec<Ref>>,
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

    /// Appends the next data block's reference.
    pub fn push(&mut self, sink: &dyn BlockSink, r: Ref) {
        self.chunks += 1;
        self.push_at(sink, 0, r);
    }

    fn push_at(&mut self, sink: &dyn BlockSink, level: usize, r: Ref) {
        if self.levels.len() == level {
            self.levels.push(Vec::new());
        }
        self.levels[level].push(r);
        if self.levels[level].len() == REFS_PER_POINTER {
            let group = std::mem::take(&mut self.levels[level]);
            let up = self.seal_pointer(sink, &group);
            self.push_at(sink, level + 1, up);
        }
    }

    fn seal_pointer(&self, sink: &dyn BlockSink, group: &[Ref]) -> Ref {
        let mut plain = Vec::with_capacity(3 + group.len() * Ref::LEN);
        plain.push(POINTER);
        plain.extend_from_slice(&(group.len() as u16).to_be_bytes());
        for r in group {
            plain.extend_from_slice(&r.to_bytes());
        }
        put_sealed(sink, &self.convergence, &plain)
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
                return pending[0];
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
        tree.push(sink, r);
    }
    Ok((tree.finish(sink), len))
}

/// Fetches a block and opens it: its plaintext.
pub fn fetch(store: &dyn BlockStore, r: &Ref) -> Result<Vec<u8>, TreeError> {
    let sealed = store.get_checked_by_caller(r.score, BlockType::DATA)?;
    Ok(block::open(r, &sealed)?)
}

/// What a block of a tree holds.
pub enum Node {
    /// File data.
    Data(Vec<u8>),
    /// References to the blocks below, in order.
    Pointers(Vec<Ref>),
}

/// Decodes a block plaintext fetched by `r`.
pub fn decode(r: &Ref, plain: &[u8]) -> Result<Node, TreeError> {
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
        body.chunks(Ref::LEN)
            .map(|raw| Ref::from_bytes(raw).ok_or_else(|| malformed("bad reference")))
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
    let refs = match decode(r, &plain)? {
        Node::Data(d) => return each(*r, Some(d)),
        Node::Pointers(refs) => refs,
    };
    let first = fetch(store, &refs[0])?;
    if first.first() == Some(&POINTER) {
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
        Node::Pointers(refs) => {
            if !each(*root, Level::Pointer)? {
                return Ok(false);
            }
            for r in &refs {
                if !for_each_block(store, r, each)? {
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
