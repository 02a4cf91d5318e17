//! Files as trees of encrypted blocks, through the embedded store.

use eventi::format::block::Ref;
use eventi::format::tree::REFS_PER_POINTER;
use eventi::store::local::LocalStore;
use eventi::store::put_wait;
use eventi::stream::{self, StoreSink, TreeError};
use eventi_shared::BlockType;
use eventi_tests::pattern;

const SECRET: [u8; 32] = [3; 32];

fn write(store: &LocalStore, data: &[u8]) -> (Ref, u64) {
    let sink = StoreSink::new(store);
    let written = stream::write(&sink, &SECRET, data).unwrap();
    sink.finish().unwrap();
    written
}

fn round_trip(store: &LocalStore, data: &[u8]) -> Ref {
    let (root, len) = write(store, data);
    assert_eq!(len, data.len() as u64);
    let mut out = Vec::new();
    assert_eq!(
        stream::read(store, &root, &mut out).unwrap(),
        data.len() as u64
    );
    assert!(
        out == data,
        "a {}-byte stream came back different",
        data.len()
    );
    root
}

#[test]
fn streams_of_every_shape_round_trip_and_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(&dir.path().join("store")).unwrap();
    const { assert!(REFS_PER_POINTER >= 600) };
    for len in [0usize, 1, 16 * 1024, 57_280, 57_281, 1 << 20] {
        round_trip(&store, &pattern(len as u64, len));
    }
    // Enough leaves for a pointer block over leaf blocks (incompressible:
    // about 730 raw chunks, more than one leaf block holds).
    let big = pattern(99, 40 << 20);
    let root = round_trip(&store, &big);
    // The same content again: the same root, nothing new stored.
    let (again, _) = write(&store, &big[..]);
    assert_eq!(again, root);
    // Compressible data round-trips too.
    round_trip(&store, &b"eventi ".repeat(300_000));
}

#[test]
fn a_missing_or_substituted_block_is_named_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(&dir.path().join("store")).unwrap();
    let data = pattern(5, 3 << 20);
    let (root, _) = write(&store, &data[..]);

    // A reference whose block is not stored.
    let (_, absent) = eventi::format::block::seal(&SECRET, b"never stored");
    let err = stream::read(&store, &absent, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, TreeError::Store(_)), "{err}");
    assert!(err.to_string().contains(&absent.score.to_string()), "{err}");

    // A block stored under the root's score by someone else is refused
    // (here: another block's bytes presented with the root's reference).
    let (other_block, _) = eventi::format::block::seal(&SECRET, b"impostor");
    put_wait(&store, BlockType::DATA, other_block.clone()).unwrap();
    let impostor = Ref {
        score: eventi_shared::Score::of(&other_block),
        ..root
    };
    let mut out = Vec::new();
    let err = stream::read(&store, &impostor, &mut out).unwrap_err();
    assert!(
        matches!(
            err,
            TreeError::Store(eventi::store::StoreError::Damaged { .. })
        ),
        "{err}"
    );
    assert!(out.is_empty(), "nothing may be written from a bad block");
}

/// The tree walker visits entries depth-first in name order, each
/// directory's entry before its blocks and children, every block of every
/// content (pointer blocks before the blocks below them), and honours
/// Skip and Stop.
#[test]
fn the_walker_visits_every_entry_and_block_in_order() {
    use eventi::format::dirent::{self, Entry, Kind};
    use eventi::walk::{self, Blocks, Flow, Visit};
    use std::path::Path;

    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(&dir.path().join("store")).unwrap();
    let file = |name: &str, data: &[u8]| {
        let (r, size) = write(&store, data);
        Entry {
            kind: Kind::File,
            size,
            ..Entry::bare_dir(name.as_bytes().to_vec(), r)
        }
    };
    let directory = |name: &str, mut entries: Vec<Entry>| {
        let (r, _) = write(&store, &dirent::encode(&mut entries));
        Entry::bare_dir(name.as_bytes().to_vec(), r)
    };
    let big = pattern(7, 3 << 20);
    let sub = directory("sub", vec![file("c", b"see")]);
    let root = directory("", vec![sub, file("b", b"bee"), file("a", &big)]);

    let mut chunks = 0usize;
    let a = walk::children(&store, &root).unwrap().remove(0);
    stream::for_each_leaf(&store, &a.content.unwrap(), &mut |_, _| {
        chunks += 1;
        Ok(())
    })
    .unwrap();
    assert!(chunks > 1, "the big file needs a pointer block");

    let mut seen = Vec::new();
    walk::walk::<walk::WalkError>(&store, &root, Path::new("/"), Blocks::All, &mut |v| {
        seen.push(match v {
            Visit::Entry(p, _) => format!("entry {}", p.display()),
            Visit::Block(p, _, level) => format!("{level:?} {}", p.display()),
        });
        Ok(Flow::Continue)
    })
    .unwrap();
    let mut want = vec!["entry /a".to_string(), "Pointer /a".to_string()];
    want.extend(std::iter::repeat_n("Data /a".to_string(), chunks));
    want.extend(
        [
            "entry /b",
            "Data /b",
            "entry /sub",
            "Data /sub",
            "entry /sub/c",
            "Data /sub/c",
        ]
        .map(String::from),
    );
    assert_eq!(seen, want);

    let mut entries = Vec::new();
    let flow =
        walk::walk::<walk::WalkError>(&store, &root, Path::new("/"), Blocks::None, &mut |v| {
            let Visit::Entry(p, _) = v else {
                panic!("a block without Blocks::All")
            };
            entries.push(p.display().to_string());
            Ok(match entries.len() {
                1 => Flow::Skip,
                3 => Flow::Stop,
                _ => Flow::Continue,
            })
        })
        .unwrap();
    assert_eq!(flow, Flow::Stop);
    assert_eq!(entries, ["/a", "/b", "/sub"]);

    // Lookups say what is wrong with a path, as typed errors.
    let tree = root.content.unwrap();
    assert_eq!(
        walk::lookup(&store, tree, Path::new("/sub/c"))
            .unwrap()
            .size,
        3
    );
    let err = walk::lookup(&store, tree, Path::new("/sub/d")).unwrap_err();
    assert!(
        matches!(&err, walk::WalkError::NotFound(p) if p == Path::new("/sub/d")),
        "{err}"
    );
    let err = walk::lookup(&store, tree, Path::new("/b/x")).unwrap_err();
    assert!(
        matches!(&err, walk::WalkError::NotADirectory(p) if p == Path::new("/b")),
        "{err}"
    );
    let err = walk::lookup(&store, tree, Path::new("/sub/../a")).unwrap_err();
    assert!(matches!(err, walk::WalkError::DotDot(_)), "{err}");
}

/// Counts the blocks read through it.
struct Counting<'a> {
    inner: &'a LocalStore,
    gets: std::sync::atomic::AtomicUsize,
}

impl eventi::store::BlockStore for Counting<'_> {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn put(&self, t: BlockType, data: bytes::Bytes, done: eventi::store::PutDone) {
        self.inner.put(t, data, done)
    }
    fn get(
        &self,
        score: eventi_shared::Score,
        t: BlockType,
    ) -> Result<bytes::Bytes, eventi::store::StoreError> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.get(score, t)
    }
    fn sync(&self) -> Result<(), eventi::store::StoreError> {
        self.inner.sync()
    }
}

/// Format v2: any offset of a file is reached in one fetch per tree
/// level, and every range reads back exactly the bytes at it.
#[test]
fn a_range_costs_one_fetch_per_level() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(&dir.path().join("store")).unwrap();
    // ~800 chunks: a root pointer block over two pointer blocks.
    let data = pattern(42, 25 << 20);
    let (root, _) = write(&store, &data);
    let counting = Counting {
        inner: &store,
        gets: Default::default(),
    };
    let len = data.len() as u64;
    for (offset, want) in [
        (0, 10),
        (len - 5000, 100),
        (len / 2, 1),
        (len - 3, 10),
        (len, 5),
    ] {
        counting.gets.store(0, std::sync::atomic::Ordering::Relaxed);
        let mut out = Vec::new();
        let n = stream::read_range(&counting, &root, offset, want, &mut out).unwrap();
        let end = (offset + want).min(len) as usize;
        assert_eq!(n as usize, end - offset as usize);
        assert!(out == data[offset as usize..end], "range at {offset}");
        let fetched = counting.gets.load(std::sync::atomic::Ordering::Relaxed);
        let levels = if offset < len { 3 } else { 2 };
        assert!(fetched <= levels, "{fetched} fetches for offset {offset}");
    }
    // A range across chunk boundaries.
    let mut out = Vec::new();
    stream::read_range(&store, &root, 1_000_000, 300_000, &mut out).unwrap();
    assert!(out == data[1_000_000..1_300_000]);
}

/// Trees written by format v1 (pointer blocks without sizes) still read,
/// whole and by range: `fixtures/v1-tree.blocks` holds the blocks of one
/// stream as written by the v1 code (score[20] length[4] block, repeated).
#[test]
fn v1_trees_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(&dir.path().join("store")).unwrap();
    let raw = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/v1-tree.blocks"
    ))
    .unwrap();
    let mut at = 0;
    let mut blocks = 0;
    while at < raw.len() {
        let score = eventi_shared::Score::from_slice(&raw[at..at + 20]).unwrap();
        let len = u32::from_be_bytes(raw[at + 20..at + 24].try_into().unwrap()) as usize;
        let block = bytes::Bytes::copy_from_slice(&raw[at + 24..at + 24 + len]);
        assert_eq!(put_wait(&store, BlockType::DATA, block).unwrap(), score);
        at += 24 + len;
        blocks += 1;
    }
    assert!(blocks > 2, "the fixture has a pointer block and its data");
    let root_hex = "feefad179cb4cddc0648fe0c6bd67f8b68061036cc218778a7967049c02022b0\
                    21dca5e1b4756b75650f1a24f058e8a6fde998bbe0d25a458096e95831d4cf97\
                    8db6922578c082878ffdc957116527aea9a643a5";
    let root = Ref::from_bytes(&hex::decode(root_hex).unwrap()).unwrap();
    let want: String = (0..15000)
        .map(|i| format!("eventi v1 fixture line {i}\n"))
        .collect();
    let mut out = Vec::new();
    stream::read(&store, &root, &mut out).unwrap();
    assert!(out == want.as_bytes(), "the v1 stream reads back");
    let mut part = Vec::new();
    stream::read_range(&store, &root, 300_000, 1000, &mut part).unwrap();
    assert!(part == want.as_bytes()[300_000..301_000]);
    // Written again today under the fixture's secret, the stream is cut
    // into extents instead of chunks: other, fewer leaves under a leaf
    // block, the same bytes.
    let sink = StoreSink::new(&store);
    let (again, _) = stream::write(&sink, &[9; 32], want.as_bytes()).unwrap();
    sink.finish().unwrap();
    assert_ne!(again, root);
    let mut out = Vec::new();
    stream::read(&store, &again, &mut out).unwrap();
    assert!(out == want.as_bytes());
    let leaves = |root: &Ref| {
        let mut leaves = Vec::new();
        stream::for_each_leaf(&store, root, &mut |leaf, _| {
            leaves.push(leaf);
            Ok(())
        })
        .unwrap();
        leaves
    };
    let (old, new) = (leaves(&root), leaves(&again));
    assert!(old.iter().all(|l| l.size.is_none() && l.blocks.len() == 1));
    assert!(
        new.len() < old.len(),
        "{} extents, {} chunks",
        new.len(),
        old.len()
    );
    assert_eq!(
        new.iter().map(|l| l.size.unwrap()).sum::<u64>(),
        want.len() as u64
    );
}

/// A compressible stream is stored as frames cut into pieces; a piece
/// missing, swapped for another, or left out fails that leaf with an
/// error naming a block, never with wrong bytes.
#[test]
fn a_frame_with_a_missing_or_wrong_piece_is_an_error_not_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(&dir.path().join("store")).unwrap();
    let data = eventi_tests::compressible(3, 4 << 20);
    let root = round_trip(&store, &data);
    let mut leaves = Vec::new();
    stream::for_each_leaf(&store, &root, &mut |leaf, _| {
        leaves.push(leaf);
        Ok(())
    })
    .unwrap();
    let framed: Vec<_> = leaves.iter().filter(|l| l.blocks.len() > 1).collect();
    assert!(!framed.is_empty(), "4 MiB of text gives leaves of pieces");
    let stored: usize = leaves.iter().map(|l| l.blocks.len()).sum::<usize>() * 57_344;
    assert!(stored < data.len(), "compressed as frames");

    // A range inside and across frames reads the same bytes.
    for (offset, len) in [
        (1_000_000u64, 1000u64),
        (300_000, 700_000),
        (4_194_000, 1000),
    ] {
        let mut part = Vec::new();
        let n = stream::read_range(&store, &root, offset, len, &mut part).unwrap();
        let end = (offset + len).min(data.len() as u64) as usize;
        assert_eq!(n as usize, end - offset as usize);
        assert!(part == data[offset as usize..end], "range at {offset}");
    }

    let leaf = framed[0];
    let (_, absent) = eventi::format::block::seal(&SECRET, b"never stored");
    let mut missing = leaf.clone();
    missing.blocks[1] = absent;
    let err = stream::fetch_leaf(&store, &missing).unwrap_err();
    assert!(err.to_string().contains(&absent.score.to_string()), "{err}");

    let mut swapped = leaf.clone();
    swapped.blocks.swap(0, 1);
    let mut short = leaf.clone();
    short.blocks.pop();
    let mut resized = leaf.clone();
    resized.size = Some(resized.size.unwrap() - 1);
    for bad in [swapped, short, resized] {
        let err = stream::fetch_leaf(&store, &bad).unwrap_err();
        assert!(matches!(err, TreeError::Malformed(_)), "{err}");
        assert!(
            err.to_string().contains(&bad.blocks[0].score.to_string()),
            "{err}"
        );
    }
}
