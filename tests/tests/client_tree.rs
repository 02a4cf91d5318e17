//! Files as trees of encrypted blocks, through the embedded store.

use eventi::block::Ref;
use eventi::store::local::LocalStore;
use eventi::store::put_wait;
use eventi::tree::{self, StoreSink, TreeError, REFS_PER_POINTER};
use eventi_shared::BlockType;
use eventi_tests::pattern;

const SECRET: [u8; 32] = [3; 32];

fn write(store: &LocalStore, data: &[u8]) -> (Ref, u64) {
    let sink = StoreSink::new(store);
    let written = tree::write(&sink, &SECRET, data).unwrap();
    sink.finish().unwrap();
    written
}

fn round_trip(store: &LocalStore, data: &[u8]) -> Ref {
    let (root, len) = write(store, data);
    assert_eq!(len, data.len() as u64);
    let mut out = Vec::new();
    assert_eq!(
        tree::read(store, &root, &mut out).unwrap(),
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
    // Enough chunks for two levels of pointer blocks (~700 chunks).
    let big = pattern(99, 25 << 20);
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
    let (_, absent) = eventi::block::seal(&SECRET, b"never stored");
    let err = tree::read(&store, &absent, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, TreeError::Store(_)), "{err}");
    assert!(err.to_string().contains(&absent.score.to_string()), "{err}");

    // A block stored under the root's score by someone else is refused
    // (here: another block's bytes presented with the root's reference).
    let (other_block, _) = eventi::block::seal(&SECRET, b"impostor");
    put_wait(&store, BlockType::DATA, other_block.clone()).unwrap();
    let impostor = Ref {
        score: eventi_shared::Score::of(&other_block),
        ..root
    };
    let mut out = Vec::new();
    let err = tree::read(&store, &impostor, &mut out).unwrap_err();
    assert!(matches!(err, TreeError::Block(_)), "{err}");
    assert!(out.is_empty(), "nothing may be written from a bad block");
}

/// The tree walker visits entries depth-first in name order, each
/// directory's entry before its blocks and children, every block of every
/// content (pointer blocks before the blocks below them), and honours
/// Skip and Stop.
#[test]
fn the_walker_visits_every_entry_and_block_in_order() {
    use eventi::dirent::{self, Entry, Kind};
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
    tree::for_each_leaf(&store, &a.content.unwrap(), &mut |_, _| {
        chunks += 1;
        Ok(())
    })
    .unwrap();
    assert!(chunks > 1, "the big file needs a pointer block");

    let mut seen = Vec::new();
    walk::walk(&store, &root, Path::new("/"), Blocks::All, &mut |v| {
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
    let flow = walk::walk(&store, &root, Path::new("/"), Blocks::None, &mut |v| {
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
}
