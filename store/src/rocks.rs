//! RocksDB for both engines: tuning, opening, and scanning one table of
//! records (`keyspace`). The reasons for each setting are
//! in `docs/STORAGE.md`; in short: keys are random 21-byte scores, looked
//! up mostly to learn that they are *absent* (every new write), so bloom
//! filters on every level and in the memtable matter most.

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, Cache, DBCompressionType, IteratorMode, Options, ReadOptions, DB,
};

use crate::keyspace::Table;
use crate::{Record, StoreError, StoreOptions};

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
    crate::private::create_dir(path).map_err(|e| StoreError::io("creating", path, e))?;
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

/// Every record of `table` in `db`.
pub fn scan(db: &DB, table: Table) -> Result<Vec<Record>, StoreError> {
    let prefix = table.prefix();
    let mut out = Vec::new();
    let mut ro = ReadOptions::default();
    ro.set_total_order_seek(true);
    for item in db.iterator_opt(IteratorMode::From(prefix, rocksdb::Direction::Forward), ro) {
        let (k, v) = item?;
        let Some(id) = table.id_of(&k) else { break };
        out.push((id.to_vec(), v.to_vec()));
    }
    Ok(out)
}
