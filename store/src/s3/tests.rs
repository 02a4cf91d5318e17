//! The s3 engine against a real object store (SeaweedFS, started by
//! `scripts/test`): several front-ends on one bucket, crashes, damage.
//! Skipped, saying why, where none runs.

use bytes::Bytes;
use eventi_shared::BlockType;

use super::bucket::Bucket;
use super::names::Names;
use super::pack::PackId;
use crate::tests::{options, test_s3};
use crate::{EngineKind, NewBlock, Store, StoreOptions, Table};

fn block(n: usize, writer: u32) -> NewBlock {
    // Incompressible-looking, distinct, 5 KiB.
    let data: Vec<u8> = (0..5120)
        .map(|i| ((i * 31 + n * 7919) % 251) as u8 ^ (n as u8))
        .collect();
    let data = Bytes::from(data);
    NewBlock::of(BlockType::DATA, data, writer)
}

fn write_all(store: &Store, blocks: &[NewBlock], sync: bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        for b in blocks {
            store.write(b.clone()).await.unwrap();
        }
        if sync {
            store.sync().await.unwrap();
        }
    });
}

/// Small packs, so that a few blocks span several.
fn small_packs() -> Option<StoreOptions> {
    test_s3()?;
    let mut o = options(EngineKind::S3);
    o.s3.pack_bytes = 16 << 10;
    o.s3.read_bytes = 8 << 10;
    // Long: these tests see other front-ends' blocks by reading on a miss.
    o.s3.poll_millis = 60_000;
    Some(o)
}

#[test]
fn front_ends_on_one_bucket_share_blocks_usage_and_records() {
    let Some(opts) = small_packs() else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Store::open(dir_a.path(), &opts).unwrap();
    let b = Store::open(dir_b.path(), &opts).unwrap();
    let blocks: Vec<NewBlock> = (0..20).map(|n| block(n, 5)).collect();
    write_all(&a, &blocks, true);
    // Read back through the writer: some from the bucket, all whole.
    for blk in &blocks {
        assert_eq!(a.read(&blk.key).unwrap(), Some(blk.data.clone()));
    }
    // Through the other front-end: found on the miss, at once.
    for blk in blocks.iter().rev() {
        assert_eq!(b.read(&blk.key).unwrap(), Some(blk.data.clone()), "via B");
    }
    assert_eq!(b.stats(), a.stats());
    assert_eq!(b.usage(5).bytes, 20 * 5120);
    // B knows them now: writing one again stores nothing.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert!(!rt.block_on(b.write(blocks[3].clone())).unwrap());
    assert_eq!(b.usage(5).bytes, 20 * 5120);

    // Records are one set, and a swap is compare-and-swap across both.
    a.put_record(Table::WriteKeys, &[0, 0, 0, 1], Some(b"key one"))
        .unwrap();
    assert_eq!(
        b.get_record(Table::WriteKeys, &[0, 0, 0, 1]).unwrap(),
        Some(b"key one".to_vec())
    );
    assert_eq!(b.scan_records(Table::WriteKeys).unwrap().len(), 1);
    let head = [7u8; 33];
    assert!(a.swap_record(Table::Heads, &head, None, b"seq 1").unwrap());
    assert!(!b
        .swap_record(Table::Heads, &head, None, b"seq 1 too")
        .unwrap());
    assert!(b
        .swap_record(Table::Heads, &head, Some(b"seq 1"), b"seq 2")
        .unwrap());
    assert!(!a
        .swap_record(Table::Heads, &head, Some(b"seq 1"), b"seq 2 too")
        .unwrap());
    assert_eq!(
        a.get_record(Table::Heads, &head).unwrap(),
        Some(b"seq 2".to_vec())
    );
    // Local records stay local.
    a.put_record(Table::Features, b"x", Some(b"1")).unwrap();
    assert_eq!(b.get_record(Table::Features, b"x").unwrap(), None);
    a.shutdown().unwrap();
    b.shutdown().unwrap();

    // Both closed cleanly and marked their folders so: a new front-end
    // reads their packs once, then never lists those folders again.
    let names = Names::new(&opts.s3.prefix);
    let bucket = Bucket::connect(&opts.s3).unwrap();
    let listed = bucket.list(&names.index_root(), None).unwrap();
    let closed: Vec<&String> = listed.iter().filter(|n| n.ends_with("/closed")).collect();
    // A wrote the packs, B one index of the reference it shared (the
    // duplicate above), with no pack behind it.
    assert_eq!(closed.len(), 2, "{listed:?}");
    let packs = bucket.list(&names.pack_root(), None).unwrap();
    assert_eq!(
        packs.len(),
        listed.len() - 3,
        "B's index names no pack: {packs:?}"
    );
    let dir_c = tempfile::tempdir().unwrap();
    let c = Store::open(dir_c.path(), &opts).unwrap();
    assert_eq!(c.stats().blocks, 20);
    let fe = names.parse_index(&listed[0]).unwrap().frontend;
    assert_eq!(
        c.get_record(Table::Remote, &fe.to_be_bytes()).unwrap(),
        Some(u64::MAX.to_be_bytes().to_vec()),
        "A's folder is done with"
    );
    c.shutdown().unwrap();
}

#[test]
fn a_killed_front_end_loses_nothing_it_synced_and_its_cache_is_rebuilt() {
    let Some(opts) = small_packs() else { return };
    let dir = tempfile::tempdir().unwrap();
    let synced: Vec<NewBlock> = (100..130).map(|n| block(n, 2)).collect();
    let unsynced: Vec<NewBlock> = (200..203).map(|n| block(n, 2)).collect();
    {
        let store = Store::open(dir.path(), &opts).unwrap();
        write_all(&store, &synced, true);
        write_all(&store, &unsynced, false);
        // Dropped without a shutdown: what a kill leaves.
    }
    let store = Store::open(dir.path(), &opts).unwrap();
    for blk in &synced {
        assert_eq!(store.read(&blk.key).unwrap(), Some(blk.data.clone()));
    }
    assert_eq!(store.stats().blocks, synced.len() as u64);
    assert_eq!(store.usage(2).bytes, synced.len() as u64 * 5120);
    // Written again, the unsynced ones are new and readable.
    write_all(&store, &unsynced, true);
    assert_eq!(
        store.read(&unsynced[0].key).unwrap(),
        Some(unsynced[0].data.clone())
    );
    store.shutdown().unwrap();
    drop(store);
    // A clean reopen keeps the cache: nothing is read again.
    let store = Store::open(dir.path(), &opts).unwrap();
    assert_eq!(store.stats().blocks, (synced.len() + unsynced.len()) as u64);
    store.shutdown().unwrap();
}

#[test]
fn damage_in_the_bucket_is_named_and_the_rest_is_served() {
    let Some(opts) = small_packs() else { return };
    let names = Names::new(&opts.s3.prefix);
    let bucket = Bucket::connect(&opts.s3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &opts).unwrap();
    let blocks: Vec<NewBlock> = (300..310).map(|n| block(n, 1)).collect();
    write_all(&store, &blocks, true);
    store.shutdown().unwrap();
    drop(store);

    // Another front-end's pack whose bytes are not what its index says.
    let other = tempfile::tempdir().unwrap();
    let store = Store::open(other.path(), &opts).unwrap();
    let first = bucket.list(&names.index_root(), None).unwrap()[0].clone();
    let pack = names.pack(names.parse_index(&first).unwrap());
    let (bytes, _) = bucket.get(&pack).unwrap().unwrap();
    let mut swapped = bytes.to_vec();
    swapped.rotate_left(32 + 5120);
    bucket.put(&pack, Bytes::from(swapped)).unwrap();
    let errors: Vec<String> = blocks
        .iter()
        .filter_map(|b| store.read(&b.key).err().map(|e| e.to_string()))
        .collect();
    assert!(!errors.is_empty(), "a swapped pack must not read as good");
    assert!(errors.iter().all(|e| e.contains(&pack)), "{errors:?}");
    store.shutdown().unwrap();
    drop(store);

    // A damaged pack index (of a front-end that wrote a second pack
    // after it): the front-end that meets it still opens and serves
    // every other pack; that front-end's packs from the damaged one on
    // are missing here, never read as something else.
    let bad_fe = 0xbad;
    let pack_of = |seq| PackId {
        frontend: bad_fe,
        seq,
    };
    bucket
        .put(
            &names.index(pack_of(0)),
            Bytes::from_static(b"EvX1 not really"),
        )
        .unwrap();
    let later = block(999, 1);
    let mut record = crate::log::record::encode_header(&later.key, later.data.len(), 1).to_vec();
    record.extend_from_slice(&later.data);
    let entry = super::pack::PackEntry {
        key: later.key,
        len: later.data.len() as u32,
        writer: 1,
        offset: 0,
    };
    bucket
        .put(&names.pack(pack_of(1)), Bytes::from(record.clone()))
        .unwrap();
    bucket
        .put(
            &names.index(pack_of(1)),
            Bytes::from(super::pack::encode_index(&[entry], record.len() as u64)),
        )
        .unwrap();
    let third = tempfile::tempdir().unwrap();
    let store = Store::open(third.path(), &opts).expect("one bad index does not stop a front-end");
    assert_eq!(
        store.read(&later.key).unwrap(),
        None,
        "past the damaged index"
    );
    let readable = blocks
        .iter()
        .filter(|b| matches!(store.read(&b.key), Ok(Some(_))))
        .count();
    // The rotated pack's blocks are errors; the other packs' read.
    assert!(readable > 0 && readable < blocks.len(), "{readable}");
    store.shutdown().unwrap();
}

#[test]
fn another_bucket_s_cache_is_not_used() {
    let Some(opts) = small_packs() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &opts).unwrap();
    write_all(&store, &[block(400, 1)], true);
    store.shutdown().unwrap();
    drop(store);
    let mut elsewhere = opts.clone();
    elsewhere.s3.prefix.push_str("-elsewhere");
    let store = Store::open(dir.path(), &elsewhere).unwrap();
    assert_eq!(
        store.stats().blocks,
        0,
        "the other prefix's blocks are not here"
    );
    assert_eq!(store.read(&block(400, 1).key).unwrap(), None);
    store.shutdown().unwrap();
}

/// The test PostgreSQL (`scripts/test` starts one), or `None` (and why).
fn test_postgres() -> Option<String> {
    let conninfo = std::env::var("EVENTI_TEST_POSTGRES")
        .ok()
        .filter(|c| !c.is_empty());
    if conninfo.is_none() {
        eprintln!("records in PostgreSQL not tested: EVENTI_TEST_POSTGRES is not set (scripts/test starts one)");
    }
    conninfo
}

#[test]
fn records_in_postgres_are_one_set_and_swaps_are_atomic_across_front_ends() {
    let Some(mut opts) = small_packs() else {
        return;
    };
    let Some(conninfo) = test_postgres() else {
        return;
    };
    opts.s3.records_database = Some(conninfo);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = Store::open(dirs[0].path(), &opts).unwrap();
    let b = Store::open(dirs[1].path(), &opts).unwrap();

    a.put_record(Table::WriteKeys, &[0, 0, 0, 1], Some(b"key one"))
        .unwrap();
    assert_eq!(
        b.get_record(Table::WriteKeys, &[0, 0, 0, 1]).unwrap(),
        Some(b"key one".to_vec())
    );
    assert_eq!(
        b.scan_records(Table::WriteKeys).unwrap(),
        vec![(vec![0, 0, 0, 1], b"key one".to_vec())]
    );
    // Nothing of it in the bucket: the database holds it.
    let names = Names::new(&opts.s3.prefix);
    let bucket = Bucket::connect(&opts.s3).unwrap();
    assert!(bucket
        .list(&names.record_folder("keys"), None)
        .unwrap()
        .is_empty());

    // Two front-ends, four threads each, incrementing one head by
    // compare-and-swap: no increment is lost.
    let head = [9u8; 33];
    assert!(a.swap_record(Table::Heads, &head, None, b"0").unwrap());
    assert!(!b.swap_record(Table::Heads, &head, None, b"0").unwrap());
    let per_thread = 25;
    std::thread::scope(|s| {
        for store in [&a, &b, &a, &b, &a, &b, &a, &b] {
            s.spawn(move || {
                let mut done = 0;
                while done < per_thread {
                    let now = store.get_record(Table::Heads, &head).unwrap().unwrap();
                    let n: u64 = String::from_utf8(now.clone()).unwrap().parse().unwrap();
                    let next = (n + 1).to_string();
                    if store
                        .swap_record(Table::Heads, &head, Some(&now), next.as_bytes())
                        .unwrap()
                    {
                        done += 1;
                    }
                }
            });
        }
    });
    assert_eq!(
        b.get_record(Table::Heads, &head).unwrap(),
        Some((8 * per_thread).to_string().into_bytes())
    );
    a.put_record(Table::WriteKeys, &[0, 0, 0, 1], None).unwrap();
    assert_eq!(b.scan_records(Table::WriteKeys).unwrap(), vec![]);

    // A front-end without the database would see none of it: refused.
    let mut without = opts.clone();
    without.s3.records_database = None;
    let e = Store::open(dirs[2].path(), &without)
        .err()
        .expect("refused");
    assert!(e.to_string().contains("records_database"), "{e}");
    // Nor may a store whose records are in its bucket move to one.
    let mut other = small_packs().unwrap();
    other.s3.prefix.push_str("-bucket-records");
    let dir = tempfile::tempdir().unwrap();
    let c = Store::open(dir.path(), &other).unwrap();
    c.put_record(Table::WriteKeys, &[0, 0, 0, 1], Some(b"key"))
        .unwrap();
    c.shutdown().unwrap();
    drop(c);
    other.s3.records_database = opts.s3.records_database.clone();
    let dir = tempfile::tempdir().unwrap();
    let e = Store::open(dir.path(), &other).err().expect("refused");
    assert!(e.to_string().contains("not supported"), "{e}");
    a.shutdown().unwrap();
    b.shutdown().unwrap();
}

#[test]
fn an_unreachable_records_database_is_named() {
    let Some(mut opts) = small_packs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    opts.s3.records_database = Some(format!(
        "host={} user=eventi dbname=eventi",
        dir.path().join("no-such-socket-dir").display()
    ));
    let e = Store::open(dir.path(), &opts).err().expect("refused");
    let text = e.to_string();
    assert!(text.contains("records database"), "{text}");
    assert!(text.contains("no-such-socket-dir/eventi"), "{text}");
}

/// A prune through one front-end lets go of exactly what it would on one
/// server, whatever the other front-ends learned of holders meanwhile:
/// references made through another count, the release reaches it, and a
/// reference it made before hearing of the release brings the block back
/// on both.
#[test]
fn a_prune_through_one_front_end_is_shared_with_the_others() {
    let Some(opts) = small_packs() else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Store::open(dir_a.path(), &opts).unwrap();
    let b = Store::open(dir_b.path(), &opts).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Writer 1 stores x, y and z through A; writer 2 stores y again
    // through B (a duplicate there, so only a shared reference).
    let (x, y, z) = (block(900, 1), block(901, 1), block(902, 1));
    write_all(&a, &[x.clone(), y.clone(), z.clone()], true);
    b.refresh().unwrap();
    let y2 = NewBlock {
        writer: 2,
        ..y.clone()
    };
    assert!(!rt.block_on(b.write(y2)).unwrap(), "y is a duplicate on B");
    rt.block_on(b.sync()).unwrap();
    a.refresh().unwrap();
    assert_eq!(a.holders(&y.key).unwrap().len(), 2, "A knows B's reference");

    // Writer 1 prunes through A, needing x only (a second later: stamps
    // are in seconds).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    a.prune_begin(1).unwrap();
    assert_eq!(a.hold(1, &[x.key]).unwrap(), vec![true]);
    let done = a
        .prune_commit(1, std::time::Duration::ZERO, &mut || Ok(()))
        .unwrap();
    assert_eq!((done.dead_blocks, done.moved_blocks), (1, 1), "{done:?}");
    assert!(!a.contains(&z.key).unwrap(), "z is dead on A");
    assert_eq!(a.usage(1).bytes, 5120, "writer 1 pays for x");
    assert_eq!(a.usage(2).bytes, 5120, "writer 2 pays for y now");
    // The epoch is shared: a backup through B learns of the prune.
    assert_eq!(b.prune_state(1).unwrap().epoch, done.epoch);

    // Before B hears of the release, writer 3 stores z there again: a
    // duplicate on B, a reference made after the cutoff.
    let z3 = NewBlock {
        writer: 3,
        ..z.clone()
    };
    assert!(!rt.block_on(b.write(z3)).unwrap(), "B still has z");
    rt.block_on(b.sync()).unwrap();
    b.refresh().unwrap();
    a.refresh().unwrap();
    for (name, s) in [("A", &a), ("B", &b)] {
        assert!(s.contains(&z.key).unwrap(), "z lives on {name}");
        assert_eq!(s.read(&z.key).unwrap(), Some(z.data.clone()), "{name}");
        let holders: Vec<u32> = s.holders(&z.key).unwrap().iter().map(|h| h.0).collect();
        assert_eq!(holders, vec![3], "{name}: only writer 3 holds z");
        assert_eq!(s.usage(1).bytes, 5120, "{name}: writer 1 pays for x");
        assert_eq!(s.usage(2).bytes, 5120, "{name}: writer 2 for y");
        assert_eq!(s.usage(3).bytes, 5120, "{name}: writer 3 for z");
        assert_eq!(s.stats().blocks, 3, "{name}");
    }

    // A front-end rebuilt from the bucket alone sees the same.
    a.shutdown().unwrap();
    b.shutdown().unwrap();
    let dir_c = tempfile::tempdir().unwrap();
    let c = Store::open(dir_c.path(), &opts).unwrap();
    for w in 1..=3 {
        assert_eq!(c.usage(w).bytes, 5120, "rebuilt: writer {w}");
    }
    assert_eq!(c.holders(&y.key).unwrap().len(), 1, "rebuilt: y's holders");
    assert_eq!(c.stats().blocks, 3);
    c.shutdown().unwrap();
}

/// Asserts that every one of `blocks` reads back whole through `store`
/// (`who` names it in the message, with the block's place in the list).
fn assert_all_read(store: &Store, blocks: &[&NewBlock], who: &str) {
    for (i, blk) in blocks.iter().enumerate() {
        let got = store.read(&blk.key).unwrap();
        assert!(
            got.as_ref() == Some(&blk.data),
            "{who}: block {i} ({}): {:?}",
            blk.key.score,
            got.map(|d| d.len())
        );
    }
}

/// Front-ends that follow plans by themselves, quickly.
fn repacking() -> Option<StoreOptions> {
    let mut o = small_packs()?;
    o.s3.poll_millis = 200;
    o.s3.lease_secs = 8;
    Some(o)
}

fn objects_under(opts: &StoreOptions, folder: &str) -> usize {
    let bucket = Bucket::connect(&opts.s3).unwrap();
    bucket.list(folder, None).unwrap().len()
}

/// After a prune, a repack through one front-end removes the packs that
/// are mostly dead while another front-end serves: every block a writer
/// holds still reads through both, and through a front-end rebuilt from
/// the bucket alone; usage is unchanged; fewer packs are left.
#[test]
fn a_repack_gives_space_back_and_every_live_block_still_reads_everywhere() {
    let Some(opts) = repacking() else { return };
    repack_gives_space_back(&opts);
}

/// The same with the records (prune states, the lease) in PostgreSQL.
#[test]
fn a_repack_with_records_in_postgres_gives_space_back() {
    let (Some(mut opts), Some(conninfo)) = (repacking(), test_postgres()) else {
        return;
    };
    opts.s3.records_database = Some(conninfo);
    repack_gives_space_back(&opts);
}

fn repack_gives_space_back(opts: &StoreOptions) {
    let opts = opts.clone();
    let names = Names::new(&opts.s3.prefix);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Store::open(dir_a.path(), &opts).unwrap();
    let b = Store::open(dir_b.path(), &opts).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ones: Vec<NewBlock> = (0..40).map(|n| block(2000 + n, 1)).collect();
    write_all(&a, &ones, true);
    b.refresh().unwrap();
    // Writer 2 holds ten of them too, and five of its own.
    let twos: Vec<NewBlock> = ones[10..20]
        .iter()
        .map(|blk| NewBlock {
            writer: 2,
            ..blk.clone()
        })
        .chain((0..5).map(|n| block(3000 + n, 2)))
        .collect();
    write_all(&b, &twos, true);
    a.refresh().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Writer 1 keeps five.
    a.prune_begin(1).unwrap();
    let kept: Vec<_> = ones[..5].iter().map(|blk| blk.key).collect();
    a.hold(1, &kept).unwrap();
    let done = a
        .prune_commit(1, std::time::Duration::ZERO, &mut || Ok(()))
        .unwrap();
    assert_eq!(done.dead_blocks, 25, "{done:?}");
    b.refresh().unwrap();
    // Bytes and blocks (when each front-end saw the last write differs).
    let usage = |s: &Store| {
        let (one, two) = (s.usage(1), s.usage(2));
        ((one.bytes, one.blocks), (two.bytes, two.blocks))
    };
    let (before_a, before_b) = (usage(&a), usage(&b));
    assert_eq!(before_a, ((5 * 5120, 5), (15 * 5120, 15)));
    let packs_before = objects_under(&opts, &names.pack_root());

    let options = crate::compact::CompactOptions {
        live_below: 0.5,
        ..Default::default()
    };
    let report = a.compact(&options).unwrap();
    assert!(report.removed > 0, "{report:?}");
    assert!(report.bytes_freed > 0, "{report:?}");
    let packs_after = objects_under(&opts, &names.pack_root());
    assert!(
        packs_after < packs_before,
        "{packs_before} packs before, {packs_after} after: {report:?}"
    );
    b.refresh().unwrap();

    let live: Vec<&NewBlock> = ones[..5]
        .iter()
        .chain(&ones[10..20])
        .chain(&twos[10..])
        .collect();
    for (name, s) in [("A", &a), ("B", &b)] {
        assert_all_read(s, &live, name);
        assert!(s.read(&ones[30].key).unwrap().is_none(), "{name}: dead");
        assert_eq!(usage(s), before_a, "{name}: usage");
    }
    assert_eq!(usage(&b), before_b);
    // A dead block written again is new, and stored.
    assert!(rt.block_on(b.write(ones[30].clone())).unwrap());
    rt.block_on(b.sync()).unwrap();
    a.shutdown().unwrap();
    b.shutdown().unwrap();

    let dir_c = tempfile::tempdir().unwrap();
    let c = Store::open(dir_c.path(), &opts).unwrap();
    let written_again: Vec<&NewBlock> = live.iter().copied().chain([&ones[30]]).collect();
    assert_all_read(&c, &written_again, "rebuilt");
    assert!(c.read(&ones[31].key).unwrap().is_none(), "rebuilt: dead");
    assert_eq!(
        c.usage(1).blocks,
        6,
        "rebuilt: writer 1's five and the new one"
    );
    assert_eq!(c.usage(2).blocks, 15, "rebuilt: writer 2");
    c.shutdown().unwrap();
}

/// A front-end that stalls (here: one that never polls) is passed over
/// by a repack once its heartbeat ages past the lease; its next sync
/// looks for plans first, and fails, naming the block, if a block it took
/// as already stored during the stall was removed. Sent again, the block
/// is stored anew; one that was copied needs nothing.
#[test]
fn a_stalled_front_end_is_passed_over_and_its_next_sync_refuses_what_was_removed() {
    let Some(opts) = repacking() else { return };
    let mut stalled = opts.clone();
    stalled.s3.poll_millis = 600_000;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Store::open(dir_a.path(), &opts).unwrap();
    let ones: Vec<NewBlock> = (0..20).map(|n| block(4000 + n, 1)).collect();
    write_all(&a, &ones, true);
    let b = Store::open(dir_b.path(), &stalled).unwrap();
    assert_eq!(b.stats().blocks, 20);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    a.prune_begin(1).unwrap();
    a.hold(1, &[ones[0].key, ones[1].key]).unwrap();
    let done = a
        .prune_commit(1, std::time::Duration::ZERO, &mut || Ok(()))
        .unwrap();
    assert_eq!(done.dead_blocks, 18);

    // Before B hears of any of it: writer 3 stores a block A let go of,
    // writer 4 one A keeps. Both are duplicates on B.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let gone = NewBlock {
        writer: 3,
        ..ones[15].clone()
    };
    let copied = NewBlock {
        writer: 4,
        ..ones[0].clone()
    };
    assert!(!rt.block_on(b.write(gone.clone())).unwrap());
    assert!(!rt.block_on(b.write(copied.clone())).unwrap());

    let report = a
        .compact(&crate::compact::CompactOptions {
            live_below: 0.5,
            ..Default::default()
        })
        .unwrap();
    assert!(report.removed > 0, "B was passed over: {report:?}");

    let err = rt.block_on(b.sync()).unwrap_err().to_string();
    assert!(err.contains(&gone.key.score.to_string()), "{err}");
    assert!(err.contains("send them again"), "{err}");
    // Sent again, it is new; the sync then succeeds.
    assert!(rt.block_on(b.write(gone.clone())).unwrap());
    rt.block_on(b.sync()).unwrap();
    a.refresh().unwrap();
    for (name, s) in [("A", &a), ("B", &b)] {
        assert_all_read(s, &[&gone, &copied, &ones[1]], name);
        assert!(s.read(&ones[16].key).unwrap().is_none(), "{name}: dead");
    }
    a.shutdown().unwrap();
    b.shutdown().unwrap();
}

/// A front-end killed leaves its folder open and, here, a pack sent
/// without its index; one stalled stops writing its heartbeat. Once both
/// are silent for `gone_secs`, a repack closes their folders (as their
/// clean shutdown would have) and removes the orphan pack; the stalled
/// one then refuses every sync, saying why; everything either synced
/// still reads through a new front-end.
#[test]
fn front_ends_gone_for_good_are_closed_and_a_stalled_one_refuses_to_sync() {
    let Some(mut opts) = repacking() else { return };
    opts.s3.lease_secs = 4;
    opts.s3.gone_secs = 4;
    let mut stalled = opts.clone();
    stalled.s3.poll_millis = 600_000;
    let names = Names::new(&opts.s3.prefix);
    let bucket = Bucket::connect(&opts.s3).unwrap();
    let (dir_a, dir_k, dir_b) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let a = Store::open(dir_a.path(), &opts).unwrap();
    let killed: Vec<NewBlock> = (0..8).map(|n| block(5000 + n, 1)).collect();
    let k_id;
    {
        let k = Store::open(dir_k.path(), &stalled).unwrap();
        write_all(&k, &killed, true);
        let listed = bucket.list(&names.index_root(), None).unwrap();
        k_id = names.parse_index(&listed[0]).unwrap().frontend;
        // Dropped without a shutdown: what a kill leaves.
    }
    let sent = bucket.list(&names.index_folder(k_id), None).unwrap().len() as u64;
    let orphan = names.pack(PackId {
        frontend: k_id,
        seq: sent,
    });
    bucket
        .put(
            &orphan,
            Bytes::from_static(b"a pack whose index never came"),
        )
        .unwrap();
    let b = Store::open(dir_b.path(), &stalled).unwrap();
    let by_b: Vec<NewBlock> = (0..4).map(|n| block(6000 + n, 2)).collect();
    write_all(&b, &by_b, true);

    std::thread::sleep(std::time::Duration::from_millis(4500));
    a.compact(&crate::compact::CompactOptions::default())
        .unwrap();
    let closed = bucket
        .get(&names.closed(k_id))
        .unwrap()
        .expect("K's folder closed");
    assert_eq!(closed.0, Bytes::from(format!("{sent}\n")));
    assert!(
        bucket.get(&orphan).unwrap().is_none(),
        "the orphan pack is removed"
    );
    assert!(bucket.get(&names.heartbeat(k_id)).unwrap().is_none());

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(b.write(block(6100, 2))).unwrap();
    let err = rt.block_on(b.sync()).unwrap_err().to_string();
    assert!(err.contains("taken for gone"), "{err}");

    let dir_c = tempfile::tempdir().unwrap();
    let c = Store::open(dir_c.path(), &opts).unwrap();
    let synced: Vec<&NewBlock> = killed.iter().chain(&by_b).collect();
    assert_all_read(&c, &synced, "a new front-end");
    a.shutdown().unwrap();
    c.shutdown().unwrap();
}
