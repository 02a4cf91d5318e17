//! The local cache, one per destination: what makes a re-backup cheap.
//!
//! - The stat cache maps a file's absolute path to what it was last
//!   time (inode, size, mtime, ctime) and the reference its content was
//!   stored under. A file whose stat matches is not read at all.
//! - The sent-block record lists, per server of the circle, scores known
//!   to be durable there, so neither an unchanged tree nor the rerun of
//!   an interrupted backup sends a block twice, and a server that joins
//!   the circle is not assumed to hold anything.
//!
//! - Directory records map a directory's path to the signature of
//!   everything below it (names and stats, see `backup::signature`) and
//!   the reference its listing was stored under: a directory whose
//!   signature matches is neither walked nor stored again.
//!
//! All only ever name blocks after the store has synced them: entries
//! are queued in a [`Pending`] batch and committed by
//! [`Cache::commit`] right after a store sync. Losing the cache loses
//! nothing but time (`--no-cache` ignores it; deleting the directory
//! resets it). It is a small RocksDB: lookups stay fast and memory stays
//! bounded with millions of files.

use std::path::Path;

use std::collections::BTreeMap;

use eventi_shared::Score;
use rocksdb::{Options, WriteBatch, DB};

use crate::format::block::Ref;
use crate::format::snapshot::Counts;
use crate::store::circle::MemberId;

const FILE: u8 = b'f';
/// `d` + path: a [`DirRecord`].
const DIR: u8 = b'd';
/// `B` + member id[8] + score[20]. (Caches before the circle used `b` +
/// score for every server at once; those entries are ignored.)
const BLOCK: u8 = b'B';
const GENERATION: &[u8] = b"generation";
/// `E` + member id[8]: the member's prune epoch the block and file
/// records were made in.
const EPOCH: u8 = b'E';

fn epoch_key(member: MemberId) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = EPOCH;
    k[1..].copy_from_slice(&member.0);
    k
}

/// What a file was when it was last stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileRecord {
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns.
    pub mtime_ns: i64,
    /// Status change time, ns.
    pub ctime_ns: i64,
    /// Its content's tree.
    pub content: Ref,
}

const RECORD_LEN: usize = 8 * 5 + Ref::LEN;

impl FileRecord {
    /// Whether `meta` is the stat this record was made from: same inode,
    /// size, mtime and ctime. A backup takes such a file's content from
    /// the record instead of reading it.
    pub fn matches(&self, meta: &std::fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt;
        (self.ino, self.size, self.mtime_ns, self.ctime_ns)
            == (
                meta.ino(),
                meta.len(),
                crate::fsmeta::mtime_ns(meta),
                crate::fsmeta::ctime_ns(meta),
            )
    }

    fn encode(&self, generation: u64) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        b[..8].copy_from_slice(&self.ino.to_be_bytes());
        b[8..16].copy_from_slice(&self.size.to_be_bytes());
        b[16..24].copy_from_slice(&self.mtime_ns.to_be_bytes());
        b[24..32].copy_from_slice(&self.ctime_ns.to_be_bytes());
        b[32..40].copy_from_slice(&generation.to_be_bytes());
        b[40..].copy_from_slice(&self.content.to_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<(FileRecord, u64)> {
        if b.len() != RECORD_LEN {
            return None;
        }
        let n = |i: usize| u64::from_be_bytes(b[i * 8..i * 8 + 8].try_into().expect("8"));
        Some((
            FileRecord {
                ino: n(0),
                size: n(1),
                mtime_ns: n(2) as i64,
                ctime_ns: n(3) as i64,
                content: Ref::from_bytes(&b[40..])?,
            },
            n(4),
        ))
    }
}

/// What a directory was when it was last stored: see the module
/// documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirRecord {
    /// The signature of its names and stats, all the way down.
    pub signature: [u8; 32],
    /// Its listing's stream.
    pub content: Ref,
    /// What it holds, itself included (one directory).
    pub counts: Counts,
}

const DIR_RECORD_LEN: usize = 32 + 8 + Ref::LEN + 8 * 5;

impl DirRecord {
    fn encode(&self, generation: u64) -> [u8; DIR_RECORD_LEN] {
        let mut b = [0u8; DIR_RECORD_LEN];
        b[..32].copy_from_slice(&self.signature);
        b[32..40].copy_from_slice(&generation.to_be_bytes());
        b[40..40 + Ref::LEN].copy_from_slice(&self.content.to_bytes());
        let c = &self.counts;
        for (i, n) in [c.files, c.dirs, c.symlinks, c.others, c.bytes]
            .into_iter()
            .enumerate()
        {
            let at = 40 + Ref::LEN + i * 8;
            b[at..at + 8].copy_from_slice(&n.to_be_bytes());
        }
        b
    }

    fn decode(b: &[u8]) -> Option<(DirRecord, u64)> {
        if b.len() != DIR_RECORD_LEN {
            return None;
        }
        let n = |at: usize| u64::from_be_bytes(b[at..at + 8].try_into().expect("8"));
        let count = |i: usize| n(40 + Ref::LEN + i * 8);
        Some((
            DirRecord {
                signature: b[..32].try_into().expect("32"),
                content: Ref::from_bytes(&b[40..40 + Ref::LEN])?,
                counts: Counts {
                    files: count(0),
                    dirs: count(1),
                    symlinks: count(2),
                    others: count(3),
                    bytes: count(4),
                    errors: 0,
                },
            },
            n(32),
        ))
    }
}

/// The generation a record was stamped with, whatever its kind.
fn record_generation(key: &[u8], value: &[u8]) -> Option<u64> {
    match key.first() {
        Some(&FILE) => FileRecord::decode(value).map(|(_, g)| g),
        Some(&DIR) => DirRecord::decode(value).map(|(_, g)| g),
        _ => None,
    }
}

/// Why the cache failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Another eventi command holds this cache (two backups of one home
    /// to one destination at once), or its lock could not be taken.
    #[error("cache {path}: {source}")]
    Lock {
        /// The cache directory.
        path: String,
        /// Who holds it, or why it could not be locked.
        source: crate::home::lockfile::LockError,
    },
    /// RocksDB failed. Nobody else holds the cache (its lock is ours),
    /// so deleting it loses nothing but the time to rebuild it.
    #[error("cache {path}: {source} (it is safe to delete the cache directory)")]
    Rocks {
        /// The cache directory.
        path: String,
        /// RocksDB's error.
        source: rocksdb::Error,
    },
}

/// See the module documentation.
pub struct Cache {
    db: DB,
    path: String,
    generation: u64,
    /// Held while the cache is open for writing (`None` read-only).
    _lock: Option<crate::home::lockfile::DirLock>,
}

/// Cache entries waiting for the store to sync the blocks they name.
#[derive(Default)]
pub struct Pending {
    blocks: BTreeMap<MemberId, WriteBatch>,
    files: WriteBatch,
}

fn block_key(member: MemberId, score: &Score) -> [u8; 29] {
    let mut k = [0u8; 29];
    k[0] = BLOCK;
    k[1..9].copy_from_slice(&member.0);
    k[9..].copy_from_slice(score.as_bytes());
    k
}

impl Pending {
    /// Queues "this block is stored on this member".
    pub fn block(&mut self, member: MemberId, score: &Score) {
        self.blocks
            .entry(member)
            .or_default()
            .put(block_key(member, score), []);
    }

    /// Queues a file's record, stamped with the cache's generation.
    pub fn file(&mut self, cache: &Cache, path: &[u8], record: &FileRecord) {
        self.files
            .put(file_key(path), record.encode(cache.generation));
    }

    /// Queues a directory's record, stamped with the cache's generation.
    pub fn dir(&mut self, cache: &Cache, path: &[u8], record: &DirRecord) {
        self.files
            .put(keyed(DIR, path), record.encode(cache.generation));
    }

    /// Entries queued.
    pub fn len(&self) -> usize {
        self.blocks.values().map(WriteBatch::len).sum::<usize>() + self.files.len()
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.blocks
            .values()
            .map(WriteBatch::size_in_bytes)
            .sum::<usize>()
            + self.files.size_in_bytes()
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn file_key(path: &[u8]) -> Vec<u8> {
    keyed(FILE, path)
}

fn keyed(kind: u8, path: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + path.len());
    k.push(kind);
    k.extend_from_slice(path);
    k
}

/// Whether `path` is `dir` or lies below it.
fn at_or_below(path: &[u8], dir: &[u8]) -> bool {
    path.starts_with(dir)
        && (path.len() == dir.len() || path[dir.len()] == b'/' || dir.ends_with(b"/"))
}

impl Drop for Cache {
    /// Writes what the cache holds in memory to its table files: RocksDB
    /// otherwise replays its whole log at every open until 16 MiB of
    /// records pile up, and a first backup's records (12 MB for 45,000
    /// files) took a cold re-backup 0.3-0.5 s to read back.
    fn drop(&mut self) {
        let _ = self.db.flush();
    }
}

impl Cache {
    /// Opens (creating) the cache in `dir` and starts a new generation.
    pub fn open(dir: &Path) -> Result<Cache, CacheError> {
        let path = dir.display().to_string();
        let lock =
            crate::home::lockfile::DirLock::take(dir).map_err(|source| CacheError::Lock {
                path: path.clone(),
                source,
            })?;
        let err = |source| CacheError::Rocks {
            path: path.clone(),
            source,
        };
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_write_buffer_size(16 << 20);
        options.set_max_open_files(64);
        options.set_keep_log_file_num(2);
        let db = DB::open(&options, dir).map_err(err)?;
        let generation = db
            .get(GENERATION)
            .map_err(err)?
            .and_then(|v| Some(u64::from_be_bytes(v.as_slice().try_into().ok()?)))
            .unwrap_or(0)
            + 1;
        db.put(GENERATION, generation.to_be_bytes()).map_err(err)?;
        Ok(Cache {
            db,
            path,
            generation,
            _lock: Some(lock),
        })
    }

    /// Opens the cache at `dir` to look records up only, beside a backup
    /// that may hold it (`eventi backup --dry-run`): no lock, nothing
    /// written. `None` if there is no cache there yet.
    pub fn open_read_only(dir: &Path) -> Result<Option<Cache>, CacheError> {
        if !dir.join("CURRENT").exists() {
            return Ok(None);
        }
        let mut options = Options::default();
        options.set_max_open_files(64);
        let db =
            DB::open_for_read_only(&options, dir, false).map_err(|source| CacheError::Rocks {
                path: dir.display().to_string(),
                source,
            })?;
        Ok(Some(Cache {
            db,
            path: dir.display().to_string(),
            generation: 0,
            _lock: None,
        }))
    }

    fn err(&self, source: rocksdb::Error) -> CacheError {
        CacheError::Rocks {
            path: self.path.clone(),
            source,
        }
    }

    /// The record for `path`, if any.
    pub fn file(&self, path: &[u8]) -> Result<Option<FileRecord>, CacheError> {
        let v = self
            .db
            .get_pinned(file_key(path))
            .map_err(|e| self.err(e))?;
        Ok(v.and_then(|v| FileRecord::decode(&v)).map(|(r, _)| r))
    }

    /// The record of the directory at `path`, if any.
    pub fn dir(&self, path: &[u8]) -> Result<Option<DirRecord>, CacheError> {
        let v = self
            .db
            .get_pinned(keyed(DIR, path))
            .map_err(|e| self.err(e))?;
        Ok(v.and_then(|v| DirRecord::decode(&v)).map(|(r, _)| r))
    }

    /// Whether any directory at or below `path` has a record: if none
    /// has, signing the tree ahead of the walk cannot spare any of it.
    pub fn has_dirs_under(&self, path: &[u8]) -> Result<bool, CacheError> {
        if self.dir(path)?.is_some() {
            return Ok(true);
        }
        // Below it: keys from `d` + `path/` on (a sibling such as
        // `path-x` sorts before them).
        let mut below = keyed(DIR, path);
        if !path.ends_with(b"/") {
            below.push(b'/');
        }
        match self.db.prefix_iterator(&below).next() {
            Some(item) => {
                let (k, _) = item.map_err(|e| self.err(e))?;
                Ok(k.starts_with(&below))
            }
            None => Ok(false),
        }
    }

    /// Whether the block is known to be stored on `member`.
    pub fn has_block(&self, member: MemberId, score: &Score) -> Result<bool, CacheError> {
        let k = block_key(member, score);
        Ok(self.db.get_pinned(k).map_err(|e| self.err(e))?.is_some())
    }

    /// Commits queued entries: the block entries of the members `synced`
    /// says are durable, and, with `files`, the file records. Call only
    /// after the store synced; a member whose sync failed holds blocks
    /// that may not be durable, and a failed put leaves file records that
    /// may name a block that is nowhere.
    pub fn commit(
        &self,
        pending: Pending,
        synced: &dyn Fn(MemberId) -> bool,
        files: bool,
    ) -> Result<(), CacheError> {
        for (member, batch) in pending.blocks {
            if synced(member) {
                self.db.write(batch).map_err(|e| self.err(e))?;
            }
        }
        if files {
            self.db.write(pending.files).map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Forgets every block record of `member` (its server lost them, as
    /// `eventi check` found; `eventi repair` refills it).
    pub fn forget_member(&self, member: MemberId) -> Result<u64, CacheError> {
        let mut prefix = vec![BLOCK];
        prefix.extend_from_slice(&member.0);
        self.forget_prefix(&prefix)
    }

    /// The prune epoch of `member` this cache's records were made in.
    pub fn prune_epoch(&self, member: MemberId) -> Result<Option<u64>, CacheError> {
        let v = self.db.get(epoch_key(member)).map_err(|e| self.err(e))?;
        Ok(v.and_then(|v| Some(u64::from_be_bytes(v.as_slice().try_into().ok()?))))
    }

    /// Brings the cache to `member`'s prune epoch `epoch`: if its records
    /// were made in another one (or before epochs were kept, once the
    /// server has pruned), a prune may have reclaimed blocks they name,
    /// so the member's block records and every file record are dropped.
    /// Returns whether they were.
    pub fn enter_epoch(&self, member: MemberId, epoch: u64) -> Result<bool, CacheError> {
        let known = self.prune_epoch(member)?;
        if known == Some(epoch) {
            return Ok(false);
        }
        let stale = known.is_some() || epoch > 0;
        if stale {
            self.forget_member(member)?;
            self.forget_prefix(&[FILE])?;
            self.forget_prefix(&[DIR])?;
        }
        self.db
            .put(epoch_key(member), epoch.to_be_bytes())
            .map_err(|e| self.err(e))?;
        Ok(stale)
    }

    /// After this home's own prune of `member`, which marked `live` and
    /// moved it to `epoch`: keeps the records that name only live blocks
    /// (a file's record names its content's top block, and a marking
    /// takes everything below what it marks), drops the others, and
    /// enters the epoch, so the next backup stays fast.
    pub fn after_prune(
        &self,
        member: MemberId,
        live: &std::collections::HashSet<Score>,
        epoch: u64,
    ) -> Result<(), CacheError> {
        let mut prefix = vec![BLOCK];
        prefix.extend_from_slice(&member.0);
        self.forget_where(&prefix, |k, _| {
            Score::from_slice(&k[prefix.len()..]).is_some_and(|s| !live.contains(&s))
        })?;
        self.forget_where(&[FILE], |_, v| {
            FileRecord::decode(v).is_some_and(|(r, _)| !live.contains(&r.content.score))
        })?;
        self.forget_where(&[DIR], |_, v| {
            DirRecord::decode(v).is_some_and(|(r, _)| !live.contains(&r.content.score))
        })?;
        self.db
            .put(epoch_key(member), epoch.to_be_bytes())
            .map_err(|e| self.err(e))
    }

    /// Deletes every record whose key starts with `prefix`.
    fn forget_prefix(&self, prefix: &[u8]) -> Result<u64, CacheError> {
        self.forget_where(prefix, |_, _| true)
    }

    /// Deletes the records whose key starts with `prefix` and for which
    /// `drop` says so.
    fn forget_where(
        &self,
        prefix: &[u8],
        drop: impl Fn(&[u8], &[u8]) -> bool,
    ) -> Result<u64, CacheError> {
        let mut n = 0;
        let mut batch = WriteBatch::default();
        for item in self.db.prefix_iterator(prefix) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(prefix) {
                break;
            }
            if !drop(&k, &v) {
                continue;
            }
            batch.delete(&k);
            n += 1;
            if batch.len() >= 100_000 {
                self.db
                    .write(std::mem::take(&mut batch))
                    .map_err(|e| self.err(e))?;
            }
        }
        self.db.write(batch).map_err(|e| self.err(e))?;
        Ok(n)
    }

    /// Drops the file and directory records under `root` (a path) that
    /// this generation did not write (files deleted since, or no longer
    /// backed up), except those below a directory of `reused`: such a
    /// directory was taken whole from its record, so what lies below it
    /// was not visited, and still is as recorded.
    pub fn sweep(
        &self,
        root: &[u8],
        reused: &std::collections::HashSet<Vec<u8>>,
    ) -> Result<u64, CacheError> {
        // The reused directory `path` lies in, if any.
        let reused_above = |path: &[u8]| {
            (1..=path.len())
                .filter(|&i| i == path.len() || path[i] == b'/')
                .find(|&i| reused.contains(&path[..i]))
        };
        let mut batch = WriteBatch::default();
        let mut dropped = 0;
        for kind in [FILE, DIR] {
            let prefix = keyed(kind, root);
            let mut it = self.db.raw_iterator();
            it.seek(&prefix);
            while let (Some(k), Some(v)) = (it.key(), it.value()) {
                if !k.starts_with(&prefix) {
                    break;
                }
                let path = &k[1..];
                if at_or_below(path, root) && record_generation(k, v) != Some(self.generation) {
                    match reused_above(path) {
                        Some(end) if end < path.len() => {
                            // Everything below that directory sorts
                            // between `dir/` and `dir0` ('0' follows '/'):
                            // skip it all.
                            let mut past = keyed(kind, &path[..end]);
                            past.push(b'/' + 1);
                            it.seek(&past);
                            continue;
                        }
                        Some(_) => {}
                        None => {
                            batch.delete(k);
                            dropped += 1;
                        }
                    }
                }
                it.next();
            }
            it.status().map_err(|e| self.err(e))?;
        }
        self.db.write(batch).map_err(|e| self.err(e))?;
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: MemberId = MemberId([1; 8]);
    const TWO: MemberId = MemberId([2; 8]);

    #[test]
    fn records_and_blocks_survive_reopening_and_sweep_drops_stale_files() {
        let dir = tempfile::tempdir().unwrap();
        let (_, content) = crate::format::block::seal(&[1; 32], b"x");
        let record = FileRecord {
            ino: 7,
            size: 1,
            mtime_ns: -5,
            ctime_ns: 9,
            content,
        };
        {
            let cache = Cache::open(dir.path()).unwrap();
            let mut p = Pending::default();
            p.file(&cache, b"/a/old", &record);
            p.file(&cache, b"/a/kept", &record);
            p.file(&cache, b"/ab/other", &record);
            p.block(ONE, &content.score);
            p.block(TWO, &content.score);
            assert!(
                cache.file(b"/a/old").unwrap().is_none(),
                "not before commit"
            );
            // The second member's sync failed: its entry is dropped.
            cache.commit(p, &|m| m == ONE, true).unwrap();
        }
        let cache = Cache::open(dir.path()).unwrap();
        assert_eq!(cache.file(b"/a/old").unwrap(), Some(record));
        assert!(cache.has_block(ONE, &content.score).unwrap());
        assert!(!cache.has_block(TWO, &content.score).unwrap());
        assert!(!cache.has_block(ONE, &Score::of(b"other")).unwrap());
        assert_eq!(cache.forget_member(ONE).unwrap(), 1);
        assert!(!cache.has_block(ONE, &content.score).unwrap());
        let mut p = Pending::default();
        p.file(&cache, b"/a/kept", &record);
        cache.commit(p, &|_| true, true).unwrap();
        assert_eq!(cache.sweep(b"/a", &Default::default()).unwrap(), 1);
        assert!(cache.file(b"/a/old").unwrap().is_none());
        assert!(cache.file(b"/a/kept").unwrap().is_some());
        assert!(cache.file(b"/ab/other").unwrap().is_some(), "not under /a");
    }

    #[test]
    fn directory_records_round_trip_and_sweep_keeps_what_lies_below_reused_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (_, content) = crate::format::block::seal(&[1; 32], b"listing");
        let record = DirRecord {
            signature: [9; 32],
            content,
            counts: Counts {
                files: 3,
                dirs: 2,
                symlinks: 1,
                others: 4,
                bytes: 5000,
                errors: 0,
            },
        };
        let file = FileRecord {
            ino: 1,
            size: 2,
            mtime_ns: 3,
            ctime_ns: 4,
            content,
        };
        {
            let cache = Cache::open(dir.path()).unwrap();
            let mut p = Pending::default();
            for d in [&b"/r/kept/sub"[..], b"/r/kept-not", b"/r/gone"] {
                p.dir(&cache, d, &record);
            }
            for f in [
                &b"/r/kept/f"[..],
                b"/r/kept/sub/g",
                b"/r/kept-not/h",
                b"/r/gone/i",
            ] {
                p.file(&cache, f, &file);
            }
            cache.commit(p, &|_| true, true).unwrap();
            assert!(
                cache.has_dirs_under(b"/r/kept").unwrap(),
                "below it, behind a sibling that sorts first"
            );
            let mut p = Pending::default();
            p.dir(&cache, b"/r/kept", &record);
            cache.commit(p, &|_| true, true).unwrap();
            assert!(cache.has_dirs_under(b"/r").unwrap());
            assert!(cache.has_dirs_under(b"/r/kept").unwrap());
            assert!(!cache.has_dirs_under(b"/r/ke").unwrap(), "a name prefix");
            assert!(cache.has_dirs_under(b"/").unwrap());
            assert!(!cache.has_dirs_under(b"/other").unwrap());
        }
        let cache = Cache::open(dir.path()).unwrap();
        assert_eq!(cache.dir(b"/r/kept").unwrap(), Some(record));
        assert_eq!(cache.dir(b"/r/nothing").unwrap(), None);
        // The next generation took /r/kept whole and wrote only its record.
        let mut p = Pending::default();
        p.dir(&cache, b"/r/kept", &record);
        cache.commit(p, &|_| true, true).unwrap();
        let reused = [b"/r/kept".to_vec()].into_iter().collect();
        assert_eq!(cache.sweep(b"/r", &reused).unwrap(), 4, "kept-not and gone");
        assert!(cache.dir(b"/r/kept/sub").unwrap().is_some());
        assert!(cache.file(b"/r/kept/sub/g").unwrap().is_some());
        assert!(cache.file(b"/r/kept/f").unwrap().is_some());
        assert!(
            cache.dir(b"/r/kept-not").unwrap().is_none(),
            "sorts between /r/kept and what lies below it"
        );
        assert!(cache.file(b"/r/kept-not/h").unwrap().is_none());
        assert!(cache.dir(b"/r/gone").unwrap().is_none());
        // A prune epoch drops them with the file records.
        assert!(cache.enter_epoch(ONE, 7).unwrap());
        assert!(cache.dir(b"/r/kept").unwrap().is_none());
    }
}
