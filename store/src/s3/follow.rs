//! Following the other front-ends: reading the pack indexes they wrote
//! since the last look into the local index, every poll and when a read
//! misses.

use std::collections::HashSet;
use std::time::Instant;

use rocksdb::WriteBatch;

use super::pack::{self, PackEntry, PackId, PackLocation};
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
            let entries = match bytes.map(|b| pack::decode_index(&b)) {
                Some(Ok((entries, _))) => entries,
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
    /// already indexed), charging their writers, and records how far
    /// each front-end is read, all in one commit.
    fn apply(
        &self,
        packs: &[(PackId, Vec<PackEntry>)],
        finished: &[u64],
    ) -> Result<(), StoreError> {
        let _commit = self.commit_lock.lock().expect("commit lock");
        let mut batch = WriteBatch::default();
        let mut meta = self.index.meta();
        let mut charges = Vec::new();
        let mut added = HashSet::new();
        let now = crate::refs::now();
        let mut progress = self.progress.lock().expect("progress lock");
        for (id, entries) in packs {
            for e in entries {
                if added.contains(&e.key) || self.index.contains(&e.key)? {
                    continue;
                }
                let loc = PackLocation {
                    pack: *id,
                    offset: e.offset,
                    len: e.len,
                };
                batch.put(e.key.to_bytes(), loc.encode());
                crate::refs::put(&mut batch, &e.key, e.writer, now);
                meta = meta.plus(e.len as usize);
                charges.push((e.writer, u64::from(e.len)));
                added.insert(e.key);
            }
            let next = id.seq + 1;
            batch.put(
                Table::Remote.key(&id.frontend.to_be_bytes()),
                next.to_be_bytes(),
            );
            progress.insert(id.frontend, next);
        }
        for fe in finished {
            batch.put(Table::Remote.key(&fe.to_be_bytes()), ALL_READ.to_be_bytes());
            progress.insert(*fe, ALL_READ);
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
