//! The store's contract, run against both engines: what the server and
//! the embedded store rely on, whichever design a directory uses.

use std::path::Path;

use bytes::Bytes;
use eventi_shared::{BlockType, Score};

use crate::engine::{open_engine, Engine, FULL_AT_START};
use crate::{blobdb, log};
use crate::{BlockKey, EngineKind, Lookup, NewBlock, Store, StoreError, StoreOptions, Table};

/// The engines on local disk.
const ENGINES: [EngineKind; 2] = [EngineKind::Log, EngineKind::Blobdb];

/// Every engine: the local ones, and s3 where a test object store runs.
pub(crate) fn all_engines() -> Vec<EngineKind> {
    let mut all = ENGINES.to_vec();
    if test_s3().is_some() {
        all.push(EngineKind::S3);
    }
    all
}

/// The test object store (`EVENTI_TEST_S3=URL`, bucket
/// `EVENTI_TEST_S3_BUCKET` or `eventi-test`), if one runs.
pub(crate) fn test_s3() -> Option<crate::s3::S3Options> {
    let Some(endpoint) = std::env::var("EVENTI_TEST_S3")
        .ok()
        .filter(|e| !e.is_empty())
    else {
        eprintln!("s3 engine not tested: EVENTI_TEST_S3 is not set (scripts/test starts SeaweedFS and sets it)");
        return None;
    };
    Some(crate::s3::S3Options {
        endpoint: Some(endpoint),
        bucket: Some(
            std::env::var("EVENTI_TEST_S3_BUCKET").unwrap_or_else(|_| "eventi-test".into()),
        ),
        // One store per test: the test's thread name, made unique per run.
        prefix: format!(
            "store-tests/{}-{}/{}",
            std::process::id(),
            *RUN,
            std::thread::current()
                .name()
                .unwrap_or("main")
                .replace("::", "-")
        ),
        retry_secs: 5,
        ..crate::s3::S3Options::default()
    })
}

static RUN: std::sync::LazyLock<u64> = std::sync::LazyLock::new(rand::random);

pub(crate) fn options(kind: EngineKind) -> StoreOptions {
    StoreOptions {
        engine: kind,
        block_cache_bytes: 1 << 20,
        write_buffer_bytes: 1 << 20,
        location_cache_entries: 64,
        reserve: crate::space::Reserve::Bytes(0),
        s3: match kind {
            EngineKind::S3 => test_s3().expect("s3 tested only where it runs"),
            _ => crate::s3::S3Options::default(),
        },
        ..StoreOptions::default()
    }
}

fn block(text: &str, writer: u32) -> NewBlock {
    let data = Bytes::from(text.as_bytes().to_vec());
    NewBlock::of(BlockType::DATA, data, writer)
}

fn write(store: &Store, b: &NewBlock) -> Result<bool, StoreError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let new = store.write(b.clone()).await?;
        store.sync().await?;
        Ok(new)
    })
}

fn keys_of(store: &Store) -> Vec<BlockKey> {
    let mut keys = Vec::new();
    store
        .for_each_key(&mut |k| {
            keys.push(k);
            true
        })
        .unwrap();
    keys.sort();
    keys
}

#[test]
fn every_engine_stores_reads_deduplicates_and_keeps_records() {
    for kind in all_engines() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &options(kind)).unwrap();
        let (a, b) = (block("first block", 1), block("second block", 2));
        assert!(write(&store, &a).unwrap(), "{kind:?}: a new block");
        assert!(!write(&store, &a).unwrap(), "{kind:?}: a duplicate");
        assert!(write(&store, &b).unwrap());

        assert_eq!(store.read(&a.key).unwrap(), Some(a.data.clone()));
        assert_eq!(store.read_unverified(&b.key).unwrap(), Some(b.data.clone()));
        assert!(
            matches!(store.try_read(&a.key).unwrap(), Lookup::Found(d) if d == a.data)
                || kind == EngineKind::S3,
            "{kind:?}: a hot block is read without blocking"
        );
        let absent = block("never written", 1).key;
        assert_eq!(store.read(&absent).unwrap(), None);
        assert!(!store.contains(&absent).unwrap());
        let other_type = BlockKey {
            block_type: BlockType::ROOT,
            ..a.key
        };
        assert_eq!(
            store.read(&other_type).unwrap(),
            None,
            "{kind:?}: type is part of the key"
        );
        let zero = BlockKey {
            score: Score::ZERO,
            block_type: BlockType::DATA,
        };
        assert_eq!(store.read(&zero).unwrap(), Some(Bytes::new()));

        let stats = store.stats();
        assert_eq!(
            (stats.blocks, stats.bytes),
            (2, (a.data.len() + b.data.len()) as u64)
        );
        assert_eq!(
            store.usage(1).blocks,
            1,
            "{kind:?}: the duplicate is not charged"
        );
        assert_eq!(store.usage(2).bytes, b.data.len() as u64);
        assert_eq!(store.all_usage().len(), 2);

        store
            .put_record(Table::WriteKeys, &[0, 0, 0, 7], Some(b"seven"))
            .unwrap();
        store
            .put_record(Table::WriteKeys, &[0, 0, 0, 3], Some(b"three"))
            .unwrap();
        store
            .put_record(Table::WriteKeys, &[0, 0, 0, 9], Some(b"nine"))
            .unwrap();
        store
            .put_record(Table::WriteKeys, &[0, 0, 0, 9], None)
            .unwrap();
        assert_eq!(
            store.get_record(Table::WriteKeys, &[0, 0, 0, 7]).unwrap(),
            Some(b"seven".to_vec())
        );
        let ids: Vec<_> = store
            .scan_records(Table::WriteKeys)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, [vec![0, 0, 0, 3], vec![0, 0, 0, 7]], "{kind:?}");
        let mut want = vec![a.key, b.key];
        want.sort();
        assert_eq!(keys_of(&store), want, "{kind:?}: records are not blocks");
        store.shutdown().unwrap();
        drop(store);

        // All of it survives a reopen, usage included.
        let store = Store::open(dir.path(), &options(kind)).unwrap();
        assert_eq!(store.read(&b.key).unwrap(), Some(b.data.clone()));
        assert_eq!(store.stats(), stats);
        assert_eq!(store.usage(1).bytes, a.data.len() as u64);
        assert_eq!(store.scan_records(Table::WriteKeys).unwrap().len(), 2);
        assert_eq!(keys_of(&store), want);
        store.shutdown().unwrap();
        drop(store);
    }
}

/// A data directory keeps the engine it was made with, whatever the
/// options say later.
#[test]
fn a_directory_keeps_its_engine() {
    let dir = tempfile::tempdir().unwrap();
    let a = block("made by blobdb", 1);
    let store = Store::open(dir.path(), &options(EngineKind::Blobdb)).unwrap();
    write(&store, &a).unwrap();
    store.shutdown().unwrap();
    drop(store);
    let store = Store::open(dir.path(), &options(EngineKind::Log)).unwrap();
    assert_eq!(store.read(&a.key).unwrap(), Some(a.data));
    store.shutdown().unwrap();
    drop(store);
    assert!(dir.path().join("blobdb").is_dir() && !dir.path().join("log").exists());
}

/// Both engines: blocks written before a read-only open are served, and
/// every write is refused with the reason.
#[test]
fn a_read_only_engine_serves_and_refuses() {
    for kind in ENGINES {
        let dir = tempfile::tempdir().unwrap();
        let a = block("a block written before the disk filled", 0);
        let engine = open_engine(dir.path(), &options(kind)).unwrap();
        engine.put_batch(std::slice::from_ref(&a)).unwrap();
        engine.sync().unwrap();
        // Not closed: the read-only open must recover what a crash left.
        drop(engine);
        let ro: Box<dyn Engine> = match kind {
            EngineKind::Log => {
                Box::new(log::LogEngine::open_read_only(dir.path(), &options(kind)).unwrap())
            }
            EngineKind::Blobdb => {
                Box::new(blobdb::BlobDbEngine::open_read_only(dir.path(), &options(kind)).unwrap())
            }
            EngineKind::S3 => unreachable!("not a local engine"),
        };
        assert_eq!(ro.get(&a.key).unwrap().as_ref(), Some(&a.data), "{kind:?}");
        assert!(ro.contains(&a.key).unwrap());
        assert_eq!(ro.stats().blocks, 1, "{kind:?}");
        let mut keys = Vec::new();
        ro.for_each_key(&mut |k| {
            keys.push(k);
            true
        })
        .unwrap();
        assert_eq!(keys, [a.key], "{kind:?}");
        assert!(matches!(
            ro.put_batch(std::slice::from_ref(&a)),
            Err(StoreError::ReadOnly(_))
        ));
        assert!(matches!(
            ro.index().put_record(Table::WriteKeys, b"k", Some(b"v")),
            Err(StoreError::ReadOnly(_))
        ));
        assert_eq!(ro.index().read_only(), Some(FULL_AT_START));
        ro.close().unwrap();
    }
}

fn segment(dir: &Path, n: u32) -> std::path::PathBuf {
    dir.join("log").join(format!("{n:08}.log"))
}

/// Segment numbers may have gaps (compaction will remove segments): a
/// log of segments 0 and 3 is indexed, read and appended to.
#[test]
fn log_segments_may_have_gaps() {
    let donor = tempfile::tempdir().unwrap();
    let blocks: Vec<_> = (0..5).map(|i| block(&format!("block {i}"), 0)).collect();
    let store = Store::open(donor.path(), &options(EngineKind::Log)).unwrap();
    for b in &blocks {
        write(&store, b).unwrap();
    }
    store.shutdown().unwrap();
    drop(store);

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("log")).unwrap();
    std::fs::write(segment(dir.path(), 0), b"").unwrap();
    std::fs::copy(segment(donor.path(), 0), segment(dir.path(), 3)).unwrap();
    let store = Store::open(dir.path(), &options(EngineKind::Log)).unwrap();
    for b in &blocks {
        assert_eq!(store.read(&b.key).unwrap(), Some(b.data.clone()));
    }
    let later = block("written after the gap", 0);
    write(&store, &later).unwrap();
    store.shutdown().unwrap();
    drop(store);
    let store = Store::open(dir.path(), &options(EngineKind::Log)).unwrap();
    assert_eq!(store.read(&later.key).unwrap(), Some(later.data));
    assert_eq!(store.stats().blocks, 6);
    store.shutdown().unwrap();
    drop(store);
    assert!(!segment(dir.path(), 1).exists() && !segment(dir.path(), 4).exists());
}

/// A log shorter than its index says (a segment truncated or removed
/// by hand) is refused, naming the segment, instead of appended to.
#[test]
fn a_log_shorter_than_its_index_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &options(EngineKind::Log)).unwrap();
    write(&store, &block("one", 0)).unwrap();
    write(&store, &block("two", 0)).unwrap();
    store.shutdown().unwrap();
    drop(store);
    std::fs::write(segment(dir.path(), 0), b"").unwrap();
    let err = Store::open(dir.path(), &options(EngineKind::Log))
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("00000000.log") && text.contains("removed or truncated"),
        "{text}"
    );
}

/// Both engines: every writer that stores a block holds it, new or
/// already there, anonymous writers too; the references survive a
/// reopen, and the log engine re-makes a new block's from the log after a
/// crash that lost the index's memtable.
#[test]
fn every_writer_of_a_block_holds_it_across_reopens_and_crashes() {
    let writers = |store: &Store, b: &NewBlock| -> Vec<u32> {
        // In writer order: the references are keyed by block, then writer.
        store
            .holders(&b.key)
            .unwrap()
            .into_iter()
            .map(|(w, _)| w)
            .collect()
    };
    for kind in all_engines() {
        let dir = tempfile::tempdir().unwrap();
        let (a, a2, a0) = (
            block("shared block", 1),
            block("shared block", 2),
            block("shared block", 0),
        );
        let alone = block("one writer", 3);
        {
            let store = Store::open(dir.path(), &options(kind)).unwrap();
            assert!(write(&store, &a).unwrap());
            assert!(!write(&store, &a2).unwrap());
            assert!(!write(&store, &a0).unwrap());
            assert!(write(&store, &alone).unwrap());
            assert_eq!(writers(&store, &a), [0, 1, 2], "{kind:?}");
            assert_eq!(writers(&store, &alone), [3], "{kind:?}");
            let (_, when) = store.holders(&a.key).unwrap()[0];
            assert!(when.abs_diff(crate::refs::now()) < 60);
            // Usage still charges the first writer only.
            assert_eq!(store.usage(2).bytes, 0);
            store.shutdown().unwrap();
        }
        let store = Store::open(dir.path(), &options(kind)).unwrap();
        assert_eq!(writers(&store, &a), [0, 1, 2], "{kind:?} after reopen");
        store.shutdown().unwrap();
    }
    // Dropped without closing, as a crash leaves it: the new block's
    // reference comes back with its index entry (from the log, if the
    // index batch was lost), the duplicate's from RocksDB's WAL.
    let dir = tempfile::tempdir().unwrap();
    let b = block("written just before a crash", 7);
    let engine = open_engine(dir.path(), &options(EngineKind::Log)).unwrap();
    engine.put_batch(std::slice::from_ref(&b)).unwrap();
    engine.index().add_refs(&[(b.key, 9)]).unwrap();
    engine.sync().unwrap();
    drop(engine);
    let store = Store::open(dir.path(), &options(EngineKind::Log)).unwrap();
    assert_eq!(writers(&store, &b), [7, 9]);
    store.shutdown().unwrap();
}

/// A store made before references were kept: at the next open every block
/// is held by the legacy holder, once.
#[test]
fn blocks_from_before_references_are_held_by_the_legacy_holder() {
    let dir = tempfile::tempdir().unwrap();
    let a = block("an old block", 4);
    {
        let store = Store::open(dir.path(), &options(EngineKind::Log)).unwrap();
        write(&store, &a).unwrap();
        // Make it look old: no reference, no feature record.
        store
            .put_record(Table::Features, crate::refs::FEATURE, None)
            .unwrap();
        let engine = &store.engine;
        let mut batch = rocksdb::WriteBatch::default();
        batch.delete(crate::refs::ref_key(&a.key, 4));
        engine.index().write_for_test(batch);
        assert!(store.holders(&a.key).unwrap().is_empty());
        store.shutdown().unwrap();
    }
    let store = Store::open(dir.path(), &options(EngineKind::Log)).unwrap();
    let holders: Vec<u32> = store
        .holders(&a.key)
        .unwrap()
        .into_iter()
        .map(|(w, _)| w)
        .collect();
    assert_eq!(holders, [crate::refs::LEGACY]);
    store.shutdown().unwrap();
}
