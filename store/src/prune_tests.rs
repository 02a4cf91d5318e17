//! Letting go of blocks and giving their space back, on real stores in
//! temporary directories.

use std::time::Duration;

use bytes::Bytes;
use eventi_shared::BlockType;

use crate::compact::CompactOptions;
use crate::{BlockKey, EngineKind, NewBlock, Store, StoreError, StoreOptions};

fn options(segment_bytes: u64) -> StoreOptions {
    StoreOptions {
        engine: EngineKind::Log,
        block_cache_bytes: 1 << 20,
        write_buffer_bytes: 1 << 20,
        location_cache_entries: 64,
        segment_bytes,
        reserve: crate::space::Reserve::Bytes(0),
        ..StoreOptions::default()
    }
}

fn block(text: &str, writer: u32) -> NewBlock {
    let data = Bytes::from(format!("{text:<40}").repeat(40).into_bytes());
    NewBlock::of(BlockType::DATA, data, writer)
}

fn write_all(store: &Store, blocks: &[NewBlock]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        for b in blocks {
            store.write(b.clone()).await.unwrap();
        }
        store.sync().await.unwrap();
    })
}

fn no_check() -> impl FnMut() -> Result<(), String> {
    || Ok(())
}

/// References are stamped in whole seconds: a marking must begin in a
/// later second than the writes it is to judge.
fn next_second() {
    std::thread::sleep(Duration::from_millis(1100));
}

/// The engines that give space back: the log, and s3 where one runs.
fn reclaiming() -> Vec<StoreOptions> {
    let mut all = vec![options(1 << 30)];
    if crate::tests::test_s3().is_some() {
        all.push(crate::tests::options(EngineKind::S3));
    }
    all
}

#[test]
fn a_prune_lets_go_of_what_its_writer_no_longer_needs_and_only_that() {
    for opts in reclaiming() {
        eprintln!("engine {:?}", opts.engine);
        prune_lets_go_of_what_is_not_needed(&opts);
    }
}

fn prune_lets_go_of_what_is_not_needed(opts: &StoreOptions) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts).unwrap();
    let only_one = block("only writer 1 has it", 1);
    let shared1 = block("both writers have it", 1);
    let shared2 = block("both writers have it", 2);
    let other = block("only writer 2 has it", 2);
    let kept = block("writer 1 still needs it", 1);
    write_all(&store, &[only_one.clone(), shared1.clone(), kept.clone()]);
    write_all(&store, &[shared2.clone(), other.clone()]);
    let len = only_one.data.len() as u64;
    assert_eq!(store.usage(1).bytes, 3 * len);
    assert_eq!(store.usage(2).bytes, len);
    next_second();

    let began = store.prune_begin(1).unwrap();
    assert_eq!(began.epoch, 0);
    let present = store
        .hold(1, &[kept.key, block("never stored", 1).key])
        .unwrap();
    assert_eq!(present, [true, false]);
    let outcome = store
        .prune_commit(1, Duration::ZERO, &mut no_check())
        .unwrap();
    assert_eq!(outcome.epoch, 1);
    assert_eq!(outcome.released, 2, "{outcome:?}");
    assert_eq!((outcome.dead_blocks, outcome.dead_bytes), (1, len));
    assert_eq!((outcome.moved_blocks, outcome.moved_bytes), (1, len));

    assert_eq!(store.read(&only_one.key).unwrap(), None);
    assert!(!store.contains(&only_one.key).unwrap());
    for b in [&shared1, &other, &kept] {
        assert_eq!(store.read(&b.key).unwrap().as_ref(), Some(&b.data));
    }
    // Writer 1 pays for what it kept; writer 2 now pays for the shared
    // block too.
    assert_eq!(store.usage(1).bytes, len);
    assert_eq!(store.usage(1).blocks, 1);
    assert_eq!(store.usage(2).bytes, 2 * len);
    assert_eq!(store.usage(2).blocks, 2);
    assert_eq!(store.stats().blocks, 3);
    assert_eq!(store.prune_state(1).unwrap().epoch, 1);
    assert_eq!(store.prune_state(2).unwrap().epoch, 0);
    assert_eq!(
        store.space_counters().unwrap().reclaimable,
        len + 32,
        "the dead record, header included"
    );

    // Writer 2's prune (needing nothing) reclaims the rest of its own.
    next_second();
    store.prune_begin(2).unwrap();
    let outcome = store
        .prune_commit(2, Duration::ZERO, &mut no_check())
        .unwrap();
    assert_eq!(outcome.dead_blocks, 2);
    assert_eq!(store.usage(2).bytes, 0);
    assert_eq!(store.read(&kept.key).unwrap().as_ref(), Some(&kept.data));
    store.shutdown().unwrap();
    drop(store);

    // All of it survives a reopen, and a block let go is new again.
    let store = Store::open(dir.path(), opts).unwrap();
    assert_eq!(store.stats().blocks, 1);
    assert_eq!(store.usage(1).bytes, len);
    write_all(&store, std::slice::from_ref(&only_one));
    assert_eq!(store.usage(1).bytes, 2 * len);
    assert_eq!(
        store.read(&only_one.key).unwrap().as_ref(),
        Some(&only_one.data)
    );
    store.shutdown().unwrap();
}

#[test]
fn nothing_stored_within_the_grace_period_is_let_go() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &options(1 << 30)).unwrap();
    let recent = block("written a moment ago", 1);
    write_all(&store, std::slice::from_ref(&recent));
    next_second();
    store.prune_begin(1).unwrap();
    let outcome = store
        .prune_commit(1, Duration::from_secs(3600), &mut no_check())
        .unwrap();
    assert_eq!(outcome.released, 0);
    assert_eq!(outcome.epoch, 1, "the epoch moves even when nothing goes");
    assert!(store.contains(&recent.key).unwrap());
    // Stored during the marking: kept whatever the grace.
    store.prune_begin(1).unwrap();
    let during = block("written while marking", 1);
    write_all(&store, std::slice::from_ref(&during));
    store
        .prune_commit(1, Duration::ZERO, &mut no_check())
        .unwrap();
    assert!(store.contains(&during.key).unwrap());
    store.shutdown().unwrap();
}

#[test]
fn a_commit_without_a_marking_or_refused_by_its_check_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &options(1 << 30)).unwrap();
    let b = block("kept", 1);
    write_all(&store, std::slice::from_ref(&b));
    next_second();
    let err = store
        .prune_commit(1, Duration::ZERO, &mut no_check())
        .unwrap_err();
    assert!(matches!(err, StoreError::PruneRefused(_)), "{err}");
    store.prune_begin(1).unwrap();
    let err = store
        .prune_commit(1, Duration::ZERO, &mut || Err("heads moved".into()))
        .unwrap_err();
    assert!(err.to_string().contains("heads moved"), "{err}");
    assert_eq!(store.prune_state(1).unwrap().epoch, 0);
    assert!(store.contains(&b.key).unwrap());
    store.shutdown().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let blob = StoreOptions {
        engine: EngineKind::Blobdb,
        ..options(1 << 30)
    };
    let store = Store::open(dir.path(), &blob).unwrap();
    assert!(matches!(
        store.prune_begin(1),
        Err(StoreError::CannotReclaim)
    ));
    store.shutdown().unwrap();
}

#[test]
fn compaction_gives_dead_space_back_and_keeps_every_live_block() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: each holds a handful of blocks.
    let opts = options(8 << 10);
    let store = Store::open(dir.path(), &opts).unwrap();
    let blocks: Vec<NewBlock> = (0..200)
        .map(|i| block(&format!("block number {i:04} "), 1))
        .collect();
    write_all(&store, &blocks);
    let log_bytes = || -> u64 {
        std::fs::read_dir(dir.path().join("log"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    let before = log_bytes();
    next_second();
    store.prune_begin(1).unwrap();
    // Keep every fifth block.
    let kept: Vec<&NewBlock> = blocks.iter().step_by(5).collect();
    let keys: Vec<BlockKey> = kept.iter().map(|b| b.key).collect();
    store.hold(1, &keys).unwrap();
    let outcome = store
        .prune_commit(1, Duration::ZERO, &mut no_check())
        .unwrap();
    assert_eq!(outcome.dead_blocks, 160);
    let report = store.compact(&CompactOptions::default()).unwrap();
    assert!(report.removed > 10, "{report:?}");
    assert_eq!(report.blocks_copied, 40, "{report:?}");
    let after = log_bytes();
    assert!(
        after * 3 < before,
        "the log went from {before} to {after} bytes"
    );
    let counters = store.space_counters().unwrap();
    assert_eq!(counters.reclaimed, report.bytes_freed);
    assert_eq!(counters.reclaimable, 0, "{counters:?}");
    for b in &kept {
        assert_eq!(store.read(&b.key).unwrap().as_ref(), Some(&b.data));
    }
    // A second pass finds nothing to do.
    assert_eq!(
        store.compact(&CompactOptions::default()).unwrap().removed,
        0
    );
    store.shutdown().unwrap();
    drop(store);
    let store = Store::open(dir.path(), &opts).unwrap();
    for b in &kept {
        assert_eq!(store.read(&b.key).unwrap().as_ref(), Some(&b.data));
    }
    assert_eq!(store.stats().blocks, 40);
    assert_eq!(store.usage(1).blocks, 40);
    store.shutdown().unwrap();
}
