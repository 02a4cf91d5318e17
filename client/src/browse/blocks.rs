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
use crate::format::tree::{decode, Child, Node};
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
        let key = key_of(r);
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
        let got = stream::fetch(s.store.as_ref(), r)
            .and_then(|plain| decode(r, &plain).map_err(TreeError::from));
        let out = got.map(|node| {
            let bytes = match &node {
                Node::Data(d) => d.capacity(),
                Node::Pointers(c) => c.capacity() * std::mem::size_of::<Child>(),
            };
            s.counters.blocks.fetch_add(1, Relaxed);
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
            Node::Data(d) => Ok(d.len() as u64),
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
            Node::Data(d) => {
                if skip < d.len() as u64 {
                    let from = skip as usize;
                    let n = (d.len() - from).min(want - out.len());
                    out.extend_from_slice(&d[from..from + n]);
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
        self.ahead_below(root, 0, from, to, &mut wanted);
        for r in wanted {
            let me = self.clone();
            self.0.pool.spawn(move || {
                // A failure is the reader's to report, when it gets there.
                let _ = me.node(&r);
            });
        }
    }

    fn ahead_below(&self, r: &Ref, start: u64, from: u64, to: u64, wanted: &mut Vec<Ref>) {
        let Some(node) = self.0.cache.get(&key_of(r)) else {
            if !self
                .0
                .fetching
                .lock()
                .expect("fetching")
                .contains(&key_of(r))
            {
                wanted.push(*r);
            }
            return;
        };
        let Node::Pointers(children) = &*node else {
            return;
        };
        let mut at = start;
        for c in children {
            let Some(size) = c.size else { return };
            if at >= to {
                break;
            }
            if at + size > from {
                self.ahead_below(&c.r, at, from, to, wanted);
            }
            at += size;
        }
    }
}
