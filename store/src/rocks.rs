//! RocksDB tuning shared by both engines. The reasons for each setting are
//! in `docs/STORAGE.md`; in short: keys are random 21-byte scores, looked
//! up mostly to learn that they are *absent* (every new write), so bloom
//! filters on every level and in the memtable matter most.

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, Cache, DBCompressionType, IteratorMode, Options, ReadOptions, DB,
};

use super::{BlockKey, MetaEntry, StoreError, StoreOptions};

/// Options for a database of block keys.
pub fn options(store: &StoreOptions) -> (Options, Cache) {
    let cache = Cache::new_lru_cache(store.block_cache_bytes);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    // 10 bits per key: ~1% false positives, so a new block costs a disk
    // read for one write in a hundred at most.
    table.set_bloom_filter(10.0, false);
    table.set_whole_key_filtering(true);
    table.set_cache_index_and_filter_blocks(true);
    table.set_cache_index_and_filter_blocks_with_high_priority(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    table.set_format_version(6);

    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_block_based_table_factory(&table);
    // Scores are random: nothing to gain from compression.
    opts.set_compression_type(DBCompressionType::None);
    opts.set_write_buffer_size(store.write_buffer_bytes);
    opts.set_max_write_buffer_number(3);
    // A memtable bloom filter answers "absent" for new keys without
    // walking the skiplist.
    opts.set_memtable_whole_key_filtering(true);
    opts.set_memtable_prefix_bloom_ratio(0.1);
    opts.set_max_background_jobs(2);
    opts.set_bytes_per_sync(1 << 20);
    opts.set_level_compaction_dynamic_level_bytes(true);
    // Filters on the last level too: most lookups are for absent keys.
    opts.set_optimize_filters_for_hits(false);
    (opts, cache)
}

/// Opens a RocksDB, naming the directory if it fails (a second server on
/// the same data directory fails here, on RocksDB's LOCK file).
pub fn open(opts: &Options, path: &Path) -> Result<DB, StoreError> {
    // RocksDB makes its directory with the umask's mode; ours is 0700.
    super::private::create_dir(path).map_err(|e| StoreError::io("creating", path, e))?;
    DB::open(opts, path).map_err(|e| StoreError::BadDataDir {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Opens a RocksDB without writing to it (no new MANIFEST, no flush), for
/// a data directory whose filesystem is full.
pub fn open_read_only(opts: &Options, path: &Path) -> Result<DB, StoreError> {
    DB::open_for_read_only(opts, path, false).map_err(|e| StoreError::BadDataDir {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Calls `visit` for every block key in `db` (skipping the meta key)
/// until it returns `false`.
pub fn for_each_block_key(
    db: &DB,
    visit: &mut dyn FnMut(BlockKey) -> bool,
) -> Result<(), StoreError> {
    for item in db.iterator(IteratorMode::Start) {
        let (k, _) = item?;
        if let Some(key) = BlockKey::from_bytes(&k) {
            if !visit(key) {
                break;
            }
        }
    }
    Ok(())
}

/// A metadata value.
pub fn get_meta(db: &DB, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(db.get(key)?)
}

/// Writes metadata through RocksDB's WAL with a sync, so it is durable when
/// this returns even in the log engine, whose index batches skip the WAL.
/// (Mixing is safe: metadata keys are never written by index batches.)
pub fn put_meta(db: &DB, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
    let mut wo = rocksdb::WriteOptions::default();
    wo.set_sync(true);
    let mut batch = rocksdb::WriteBatch::default();
    match value {
        Some(v) => batch.put(key, v),
        None => batch.delete(key),
    }
    db.write_opt(batch, &wo)?;
    Ok(())
}

/// Every metadata entry under `prefix`.
pub fn scan_meta(db: &DB, prefix: &[u8]) -> Result<Vec<MetaEntry>, StoreError> {
    let mut out = Vec::new();
    let mut ro = ReadOptions::default();
    ro.set_total_order_seek(true);
    for item in db.iterator_opt(IteratorMode::From(prefix, rocksdb::Direction::Forward), ro) {
        let (k, v) = item?;
        if !k.starts_with(prefix) {
            break;
        }
        out.push((k.to_vec(), v.to_vec()));
    }
    Ok(out)
}
