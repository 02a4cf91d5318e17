//! The blocks under a browsed tree: each fetched once, opened, decoded
//! and kept in a bounded cache, counted, and read by byte range in one
//! fetch per tree level (v2 pointer blocks record the bytes below each
//! reference). A file read in order gets its next blocks fetched ahead,
//! in parallel, so that `cat` runs near restore speed; a random read
//! fetches only what it touches.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};

use eventi_shared::Score;

use crate::browse::cache::ByteLru;
use crate::format::block::Ref;
use crate::format::tree::{decode, Child, Leaf, Node};
use crate::store::BlockStore;
use crate::stream::{self, TreeError};

/// Bytes read in order before read-ahead starts: a random read of a
/// megabyte or two fetches nothing it does not need.
const READ_AHEAD_AFTER: u64 = 2 << 20;
/// The most read ahead of the reader (less with a small cache: half of it).
const READ_AHEAD_MAX: u64 = 32 << 20;
/// Fetches at once for read-ahead (each a round trip to a server).
const READ_AHEAD_THREADS: usize = 16;

/// A block's identity in the cache: its score and its SHA-256 check,
/// so that a SHA-1 collision cannot serve one block for another.
type Key = (Score, [u8; 32]);

fn key_of(r: &Ref) -> Key {
    (r.score, r.check)
}

/// A leaf's identity in the cache: its block's, or for the pieces of a
/// frame the first piece's score with a digest of every piece's check
/// (two frames may begin alike).
fn leaf_key(leaf: &Leaf) -> Key {
    if leaf.is_one_chunk() {
        return key_of(&leaf.blocks[0]);
    }
    use sha2::Digest;
    let mut all = sha2::Sha256::new();
    for b in &leaf.blocks {
        all.update(b.check);
    }
    (leaf.blocks[0].score, all.finalize().into())
}

fn take(d: &[u8], skip: u64, want: usize, out: &mut Vec<u8>) {
    if skip < d.len() as u64 {
        let from = skip as usize;
        let n = (d.len() - from).min(want - out.len());
        out.extend_from_slice(&d[from..from + n]);
    }
}

/// What the browser fetched from the store, for the figures a mount
/// prints when it ends and the tests that count fetches.
#[derive(Default)]
pub struct Counters {
    /// Blocks fetched.
    pub blocks: AtomicU64,
    /// Their plaintext bytes.
    pub bytes: AtomicU64,
}

/// Where a reader of one open file is: read-ahead follows a reader that
/// reads in order.
#[derive(Default)]
pub struct Sequence {
    next: u64,
    run: u64,
    ahead_to: u64,
}

/// See the module documentation. Cloning shares it.
#[derive(Clone)]
pub struct Blocks(Arc<Shared>);

struct Shared {
    store: Arc<dyn BlockStore>,
    cache: ByteLru<Key, Arc<Node>>,
    fetching: Mutex<HashSet<Key>>,
    fetched: Condvar,
    counters: Counters,
    pool: rayon::ThreadPool,
    /// How far ahead of a reader to fetch.
    ahead_max: u64,
}

impl Blocks {
    /// Reads through `store`, keeping up to `cache_bytes` of plaintext.
    pub fn new(store: Arc<dyn BlockStore>, cache_bytes: usize) -> Blocks {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(READ_AHEAD_THREADS)
            .thread_name(|i| format!("eventi-ahead-{i}"))
            .build()
            .expect("a read-ahead thread pool");
        Blocks(Arc::new(Shared {
            store,
            cache: ByteLru::new(cache_bytes),
            fetching: Mutex::new(HashSet::new()),
            fetched: Condvar::new(),
            counters: Counters::default(),
            pool,
            ahead_max: READ_AHEAD_MAX.min(cache_bytes as u64 / 2),
        }))
    }

    /// What was fetched so far.
    pub fn counters(&self) -> &Counters {
        &self.0.counters
    }

    /// The store's name, for log lines.
    pub fn store_name(&self) -> String {
        self.0.store.name()
    }

    /// The block `r` names, decoded: from the cache, or fetched once (a
    /// caller that finds it being fetched waits for that fetch).
    pub fn node(&self, r: &Ref) -> Result<Arc<Node>, TreeError> {
        let store = Arc::clone(&self.0.store);
        self.cached(key_of(r), 1, || {
            stream::fetch(store.as_ref(), r)
                .and_then(|plain| decode(r, &plain).map_err(TreeError::from))
        })
    }

    /// A leaf's bytes, as a data node: from the cache, or fetched and
    /// assembled once.
    fn leaf(&self, leaf: &Leaf) -> Result<Arc<Node>, TreeError> {
        if leaf.is_one_chunk() {
            return self.node(&leaf.blocks[0]);
        }
        let store = Arc::clone(&self.0.store);
        self.cached(leaf_key(leaf), leaf.blocks.len() as u64, || {
            stream::fetch_leaf(store.as_ref(), leaf).map(Node::Data)
        })
    }

    fn cached(
        &self,
        key: Key,
        blocks: u64,
        load: impl FnOnce() -> Result<Node, TreeError>,
    ) -> Result<Arc<Node>, TreeError> {
        let s = &self.0;
        if let Some(n) = s.cache.get(&key) {
            return Ok(n);
        }
        {
            let mut fetching = s.fetching.lock().expect("fetching");
            while fetching.contains(&key) {
                fetching = s.fetched.wait(fetching).expect("fetching");
            }
            if let Some(n) = s.cache.get(&key) {
                return Ok(n);
            }
            fetching.insert(key);
        }
        let out = load().map(|node| {
            let bytes = match &node {
                Node::Data(d) | Node::Piece(d) => d.capacity(),
                Node::Pointers(c) => c.capacity() * std::mem::size_of::<Child>(),
                Node::Leaves(l) => l
                    .iter()
                    .map(|l| std::mem::size_of::<Leaf>() + l.blocks.len() * Ref::LEN)
                    .sum(),
            };
            s.counters.blocks.fetch_add(blocks, Relaxed);
            s.counters.bytes.fetch_add(bytes as u64, Relaxed);
            let node = Arc::new(node);
            s.cache.insert(key, Arc::clone(&node), bytes + 64);
            node
        });
        s.fetching.lock().expect("fetching").remove(&key);
        s.fetched.notify_all();
        out
    }

    /// The bytes of the stream below `r` (for v1 pointer blocks, which
    /// do not record them: every block below is fetched).
    fn length(&self, r: &Ref) -> Result<u64, TreeError> {
        match &*self.node(r)? {
            Node::Data(d) | Node::Piece(d) => Ok(d.len() as u64),
            Node::Leaves(leaves) => Ok(leaves.iter().map(|l| l.size.unwrap_or(0)).sum()),
            Node::Pointers(children) => {
                let mut total = 0;
                for c in children {
                    total += match c.size {
                        Some(s) => s,
                        None => self.length(&c.r)?,
                    };
                }
                Ok(total)
            }
        }
    }

    /// Up to `len` bytes of the stream rooted at `root` from `offset` on
    /// (fewer where it ends): one fetch per level for the first byte.
    pub fn read_at(&self, root: &Ref, offset: u64, len: usize) -> Result<Vec<u8>, TreeError> {
        let mut out = Vec::with_capacity(len.min(4 << 20));
        self.collect(root, offset, len, &mut out)?;
        Ok(out)
    }

    /// A whole (small) stream: a directory's entries.
    pub fn read_all(&self, root: &Ref) -> Result<Vec<u8>, TreeError> {
        self.read_at(root, 0, usize::MAX)
    }

    fn collect(
        &self,
        r: &Ref,
        mut skip: u64,
        want: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), TreeError> {
        match &*self.node(r)? {
            Node::Data(d) => take(d, skip, want, out),
            Node::Piece(_) => return Err(stream::piece_alone(r)),
            Node::Leaves(leaves) => {
                for l in leaves {
                    if out.len() == want {
                        break;
                    }
                    let size = l.size.unwrap_or(0);
                    if skip >= size {
                        skip -= size;
                        continue;
                    }
                    if let Node::Data(d) = &*self.leaf(l)? {
                        take(d, skip, want, out);
                    }
                    skip = 0;
                }
            }
            Node::Pointers(children) => {
                for c in children {
                    if out.len() == want {
                        break;
                    }
                    let size = match c.size {
                        Some(s) => s,
                        None => self.length(&c.r)?,
                    };
                    if skip >= size {
                        skip -= size;
                        continue;
                    }
                    self.collect(&c.r, skip, want, out)?;
                    skip = 0;
                }
            }
        }
        Ok(())
    }

    /// [`Blocks::read_at`] for a reader at `seq`: once it has read
    /// [`READ_AHEAD_AFTER`] bytes in order, the blocks ahead of it are
    /// fetched in the background, as far ahead as it has read in order
    /// (at most [`READ_AHEAD_MAX`]).
    pub fn read_in_sequence(
        &self,
        root: &Ref,
        offset: u64,
        len: usize,
        seq: &mut Sequence,
    ) -> Result<Vec<u8>, TreeError> {
        let data = self.read_at(root, offset, len)?;
        let n = data.len() as u64;
        if offset == seq.next {
            seq.run += n;
        } else {
            seq.run = n;
            seq.ahead_to = 0;
        }
        seq.next = offset + n;
        if seq.run >= READ_AHEAD_AFTER && n > 0 {
            let to = seq.next + seq.run.min(self.0.ahead_max);
            let from = seq.ahead_to.max(seq.next);
            if to > from {
                self.fetch_ahead(root, from, to);
                seq.ahead_to = to;
            }
        }
        Ok(data)
    }

    /// Starts fetching `refs` in the background (those not cached or
    /// being fetched): the directories below one being listed, which a
    /// walk (`ls -R`, `find`) opens next.
    pub fn fetch_soon(&self, refs: Vec<Ref>) {
        for r in refs {
            if self.0.cache.contains(&key_of(&r))
                || self
                    .0
                    .fetching
                    .lock()
                    .expect("fetching")
                    .contains(&key_of(&r))
            {
                continue;
            }
            let me = self.clone();
            self.0.pool.spawn(move || {
                let _ = me.node(&r);
            });
        }
    }

    /// Starts fetching the blocks of `[from, to)` of the stream at `root`
    /// that are not cached. Pointer blocks already cached are followed;
    /// one that is not is fetched ahead itself, and its children on the
    /// reader's next call.
    fn fetch_ahead(&self, root: &Ref, from: u64, to: u64) {
        let mut wanted = Vec::new();
        self.ahead_below(&Leaf::single(*root, None), 0, from, to, &mut wanted);
        for leaf in wanted {
            let me = self.clone();
            self.0.pool.spawn(move || {
                // A failure is the reader's to report, when it gets there.
                let _ = me.leaf(&leaf);
            });
        }
    }

    /// Adds to `wanted` what below `at` (a block, or a leaf) is needed
    /// for `[from, to)` and neither cached nor being fetched.
    fn ahead_below(&self, at: &Leaf, start: u64, from: u64, to: u64, wanted: &mut Vec<Leaf>) {
        let key = leaf_key(at);
        let Some(node) = self.0.cache.get(&key) else {
            if !self.0.fetching.lock().expect("fetching").contains(&key) {
                wanted.push(at.clone());
            }
            return;
        };
        let below: Vec<Leaf> = match &*node {
            Node::Pointers(children) => {
                children.iter().map(|c| Leaf::single(c.r, c.size)).collect()
            }
            Node::Leaves(leaves) => leaves.clone(),
            Node::Data(_) | Node::Piece(_) => return,
        };
        let mut offset = start;
        for l in &below {
            let Some(size) = l.size else { return };
            if offset >= to {
                break;
            }
            if offset + size > from {
                self.ahead_below(l, offset, from, to, wanted);
            }
            offset += size;
        }
    }
}
