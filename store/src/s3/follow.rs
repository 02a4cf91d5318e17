//! Following the other front-ends: reading the pack indexes they wrote
//! since the last look into the local index, every poll and when a read
//! misses.

use std::collections::HashSet;
use std::time::Instant;

use rocksdb::WriteBatch;

use super::pack::{PackId, PackIndex, PackLocation, RefEntry};
use super::S3Engine;
use crate::index::Wal;
use crate::keyspace::Table;
use crate::StoreError;

/// A front-end's progress once every pack it will ever write is read
/// (it closed cleanly).
pub(super) const ALL_READ: u64 = u64::MAX;

impl S3Engine {
    /// Reads, into the local index, the pack indexes other front-ends
    /// wrote since the last look. Returns how many were read.
    pub(super) fn read_new_packs(&self) -> Result<usize, StoreError> {
        let root = self.names.index_root();
        let mut wanted: Vec<PackId> = Vec::new();
        let mut finished: Vec<u64> = Vec::new();
        let progress = self.progress.lock().expect("progress lock").clone();
        for folder in self.bucket.folders(&root)? {
            let Some(fe) = self.names.parse_index_folder(&folder) else {
                continue;
            };
            let next = progress.get(&fe).copied().unwrap_or(0);
            let stuck = self.stuck.lock().expect("stuck lock").contains_key(&fe);
            if fe == self.me || next == ALL_READ || stuck {
                continue;
            }
            let after = next
                .checked_sub(1)
                .map(|seq| self.names.index(PackId { frontend: fe, seq }));
            let mut expect = next;
            let closed = self.names.closed(fe);
            for name in self.bucket.list(&folder, after.as_deref())? {
                if name == closed {
                    // Sorted after every index: all of them were listed.
                    let wrote = self.bucket.get(&closed)?.and_then(|(b, _)| {
                        std::str::from_utf8(&b).ok()?.trim().parse::<u64>().ok()
                    });
                    if wrote == Some(expect) {
                        finished.push(fe);
                    }
                    break;
                }
                // Indexes are written in order, so a gap is one still
                // being written: stop there, take it next time.
                match self.names.parse_index(&name) {
                    Some(id) if id.frontend == fe && id.seq == expect => {
                        wanted.push(id);
                        expect += 1;
                    }
                    _ => break,
                }
            }
        }
        if wanted.is_empty() && finished.is_empty() {
            return Ok(0);
        }
        let objects: Vec<String> = wanted.iter().map(|id| self.names.index(*id)).collect();
        let fetched = self.bucket.get_many(&objects)?;
        let mut decoded = Vec::with_capacity(wanted.len());
        let mut stuck = self.stuck.lock().expect("stuck lock");
        for ((id, name), bytes) in wanted.iter().zip(&objects).zip(fetched) {
            if stuck.contains_key(&id.frontend) {
                continue;
            }
            let entries = match bytes.map(|b| PackIndex::decode(&b)) {
                Some(Ok(index)) => index,
                // A damaged (or vanished) index must not take the whole
                // store down: this front-end's packs are followed up to
                // it, the rest of the store is served, and the error is
                // logged once (a restart tries again).
                bad => {
                    let why = match bad {
                        Some(Err(e)) => e.to_string(),
                        _ => "listed but gone".to_string(),
                    };
                    tracing::error!(object = %format!("{}/{name}", self.bucket.label()), error = %why, "cannot read a pack index: the blocks of this and later packs of its front-end are not served here");
                    stuck.insert(id.frontend, format!("{name}: {why}"));
                    continue;
                }
            };
            decoded.push((*id, entries));
        }
        drop(stuck);
        self.apply(&decoded, &finished)?;
        Ok(decoded.len())
    }

    /// Indexes the blocks of packs other front-ends wrote (those not
    /// already indexed), charging their writers; then applies the
    /// references and releases they share, pack by pack; then records
    /// how far each front-end is read. Everything it does is idempotent,
    /// so packs read again after a failure change nothing twice.
    fn apply(&self, packs: &[(PackId, PackIndex)], finished: &[u64]) -> Result<(), StoreError> {
        let _commit = self.commit_lock.lock().expect("commit lock");
        let mut batch = WriteBatch::default();
        let mut meta = self.index.meta();
        let mut charges = Vec::new();
        let mut added = HashSet::new();
        for (id, index) in packs {
            for e in &index.blocks {
                if added.contains(&e.key) || self.index.contains(&e.key)? {
                    continue;
                }
                // Stored again after it died here: the dead copy's bytes
                // stay for the repack, the new one is the block's.
                batch.delete(Table::Dead.key(&e.key.to_bytes()));
                let loc = PackLocation::of(*id, e);
                batch.put(e.key.to_bytes(), loc.encode());
                meta = meta.plus(e.len as usize);
                charges.push((e.writer, u64::from(e.len)));
                added.insert(e.key);
            }
        }
        self.index.commit(batch, charges, meta, Wal::Off)?;
        for (id, index) in packs {
            // A new block's writer holds it from when its pack was sealed
            // (also where another front-end's copy was indexed first).
            let firsts: Vec<RefEntry> = index
                .blocks
                .iter()
                .map(|e| RefEntry {
                    key: e.key,
                    writer: e.writer,
                    time: index.time,
                })
                .collect();
            self.apply_refs(&firsts)?;
            self.apply_moved(*id, &index.moved)?;
            self.apply_refs(&index.refs)?;
            for release in &index.releases {
                self.apply_release(release)?;
            }
        }
        let mut batch = WriteBatch::default();
        let mut read = Vec::new();
        for (id, index) in packs {
            read.push((id.frontend, id.seq + 1));
            self.note_pack(&mut batch, *id, index.pack_len);
        }
        read.extend(finished.iter().map(|fe| (*fe, ALL_READ)));
        for (fe, next) in &read {
            batch.put(Table::Remote.key(&fe.to_be_bytes()), next.to_be_bytes());
        }
        self.index.commit(batch, [], self.index.meta(), Wal::Off)?;
        self.progress.lock().expect("progress lock").extend(read);
        Ok(())
    }

    /// Applies blocks another front-end copied into pack `id` out of a
    /// pack being removed: their locations move there (live or dead,
    /// their payer kept), even before this front-end has heard of the
    /// plan; one it never heard of (its first pack's index is emptied
    /// already) is indexed and charged anew.
    fn apply_moved(&self, id: PackId, moved: &[super::pack::PackEntry]) -> Result<(), StoreError> {
        if moved.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        let mut meta = self.index.meta();
        let mut charges = Vec::new();
        for e in moved {
            let dead_key = Table::Dead.key(&e.key.to_bytes());
            let mut loc = PackLocation::of(id, e);
            if let Some(old) = self.index.get(&e.key)? {
                let Some(old) = PackLocation::decode(&old) else {
                    continue;
                };
                // Whether or not it was stored anew meanwhile, the copy is
                // good: its pack is not one being removed.
                loc.writer = old.writer;
                batch.put(e.key.to_bytes(), loc.encode());
            } else if let Some(old) = self.index.db().get(&dead_key)? {
                if let Some(old) = PackLocation::decode(&old) {
                    loc.writer = old.writer;
                }
                batch.put(&dead_key, loc.encode());
            } else {
                batch.put(e.key.to_bytes(), loc.encode());
                meta = meta.plus(e.len as usize);
                charges.push((e.writer, u64::from(e.len)));
            }
        }
        self.index.commit(batch, charges, meta, Wal::Off)
    }

    /// Reads other front-ends' new packs after a read missed, unless a
    /// look that began after the miss has already been made.
    pub(super) fn refresh_after_miss(&self, missed_at: Instant) -> Result<(), StoreError> {
        let mut last = self.refreshed.lock().expect("refresh lock");
        if *last >= missed_at {
            return Ok(());
        }
        *last = Instant::now();
        self.read_new_packs().map(|_| ())
    }
}
