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
    decode, is_pointer, put_sealed, BlockSink, Level, Malformed, Node, TreeWriter,
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
    let sealed = store.get_checked(r.score, BlockType::DATA, &r.check)?;
    Ok(block::decrypt_checked(r, &sealed)?)
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

/// Calls `each` with the reference of every block of the tree rooted at
/// `root`, pointer blocks included, reading only what it must: the
/// pointer blocks, and the first child below each pointer block (which
/// says whether its siblings are data or pointers). For finding out which
/// blocks a tree is made of without reading it (`eventi check`).
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
    let refs: Vec<Ref> = match decode(r, &plain)? {
        Node::Data(_) => {
            each(*r, Level::Data);
            return Ok(());
        }
        Node::Pointers(children) => children.iter().map(|c| c.r).collect(),
    };
    each(*r, Level::Pointer);
    let first = fetch(store, &refs[0])?;
    if is_pointer(&first) {
        refs_below(store, &refs[0], first, each)?;
        for c in &refs[1..] {
            refs_below(store, c, fetch(store, c)?, each)?;
        }
    } else {
        for c in &refs {
            each(*c, Level::Data);
        }
    }
    Ok(())
}

/// Fetches, checks and unpacks one data block.
pub fn fetch_chunk(store: &dyn BlockStore, r: &Ref) -> Result<Vec<u8>, TreeError> {
    match decode(r, &fetch(store, r)?)? {
        Node::Data(d) => Ok(d),
        Node::Pointers(_) => Err(TreeError::Malformed(Malformed {
            score: r.score,
            why: "a pointer block where data was expected".into(),
        })),
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
