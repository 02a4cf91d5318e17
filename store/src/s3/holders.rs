//! Who holds each block, shared by every front-end of a bucket, so that
//! a prune through one lets go of exactly what a prune of a single server
//! would (`prune.rs`).
//!
//! A new block's writer is in its pack index already. What else a
//! front-end learns of holders it writes into its next pack index
//! (`pack.rs`, version 2), which the others read as they read its blocks:
//! - a *reference*: a writer stored a block that was already there, or a
//!   prune marked it;
//! - a *release*: a prune let go of every reference of a writer stamped
//!   before a cutoff.
//!
//! Reading them in any order gives the same holders, because a reference
//! stamped before its writer's latest cutoff is dropped wherever it is
//! read (the front-end keeps each writer's cutoff: table `Prune`, id
//! `cut` writer[4]). A block no writer holds any longer is *dead*: its key
//! leaves the index for table `Dead` (its location kept), and a reference
//! read later, from a front-end that had not yet heard of the release,
//! brings it back (no byte has moved: only `repack.rs` removes packs).

use std::collections::{HashMap, HashSet};

use rocksdb::WriteBatch;

use super::pack::{PackLocation, RefEntry, Release};
use super::S3Engine;
use crate::index::Wal;
use crate::keyspace::Table;
use crate::{BlockKey, StoreError};

/// The id, in table `Prune`, of a writer's latest cutoff read.
fn cutoff_id(writer: u32) -> Vec<u8> {
    let mut id = b"cut".to_vec();
    id.extend_from_slice(&writer.to_be_bytes());
    id
}

impl S3Engine {
    /// Records references of this front-end's writers to blocks already
    /// stored, bringing back any that had died meanwhile, and queues them
    /// for the next pack index. Fails if a block is no longer stored at
    /// all (its pack was removed after a prune): it must be sent again.
    pub(super) fn add_shared_refs(&self, refs: &[(BlockKey, u32)]) -> Result<(), StoreError> {
        if refs.is_empty() {
            return Ok(());
        }
        let _commit = self.commit_lock.lock().expect("commit lock");
        let now = crate::refs::now();
        let mut revived = Revival::new(self);
        for (key, writer) in refs {
            // Taken as stored a moment ago; now in a pack a repack is
            // removing (or gone): the writer must send it again, and it
            // is then stored anew (`repack.rs`).
            let lasting = revived.present(key)?
                && self
                    .index
                    .get(key)?
                    .and_then(|v| PackLocation::decode(&v))
                    .or(revived.location(key))
                    .is_some_and(|l| !self.is_retiring(l.pack));
            if !lasting {
                return Err(StoreError::SendAgain(format!(
                    "block {} is in a pack being removed after a prune: send it again",
                    key.score
                )));
            }
            crate::refs::put(&mut revived.batch, key, *writer, now);
            revived.charge(key, *writer);
        }
        revived.commit()?;
        self.unfenced
            .lock()
            .expect("unfenced lock")
            .extend(refs.iter().map(|(key, _)| *key));
        let mut open = self.open.lock().expect("open pack lock");
        open.index
            .refs
            .extend(refs.iter().map(|(key, writer)| RefEntry {
                key: *key,
                writer: *writer,
                time: now,
            }));
        Ok(())
    }

    /// Moves a dead block's location from the index into table `Dead`.
    pub(super) fn bury_block(
        &self,
        key: &BlockKey,
        batch: &mut WriteBatch,
    ) -> Result<(), StoreError> {
        if let Some(loc) = self.index.get(key)? {
            batch.put(Table::Dead.key(&key.to_bytes()), &*loc);
        }
        Ok(())
    }

    /// Shares a release (durably: the pack index holding it is written
    /// before this returns) and keeps its cutoff.
    pub(super) fn share_release_now(&self, writer: u32, cutoff: u64) -> Result<(), StoreError> {
        self.keep_cutoff(writer, cutoff)?;
        self.open
            .lock()
            .expect("open pack lock")
            .index
            .releases
            .push(Release { writer, cutoff });
        crate::engine::Engine::sync(self)
    }

    fn cutoff(&self, writer: u32) -> Result<u64, StoreError> {
        Ok(self
            .index
            .get_record(Table::Prune, &cutoff_id(writer))?
            .and_then(|v| crate::refs::parse_time(&v))
            .unwrap_or(0))
    }

    fn keep_cutoff(&self, writer: u32, cutoff: u64) -> Result<(), StoreError> {
        if cutoff > self.cutoff(writer)? {
            let id = cutoff_id(writer);
            self.index
                .put_record(Table::Prune, &id, Some(&cutoff.to_be_bytes()))?;
        }
        Ok(())
    }

    /// Applies another front-end's references, with commits held off
    /// (`commit_lock`, held by the caller).
    pub(super) fn apply_refs(&self, refs: &[RefEntry]) -> Result<(), StoreError> {
        let mut revived = Revival::new(self);
        let mut cutoffs = std::collections::HashMap::new();
        for r in refs {
            let cutoff = match cutoffs.get(&r.writer) {
                Some(c) => *c,
                None => *cutoffs.entry(r.writer).or_insert(self.cutoff(r.writer)?),
            };
            if r.time < cutoff {
                continue;
            }
            // A reference to a block not read in yet (its pack is listed
            // after this one) is kept: the block finds its holder there.
            revived.present(&r.key)?;
            let ref_key = crate::refs::ref_key(&r.key, r.writer);
            let newer = self
                .index
                .db()
                .get(&ref_key)?
                .and_then(|v| crate::refs::parse_time(&v))
                .is_some_and(|t| t >= r.time);
            if !newer {
                crate::refs::put(&mut revived.batch, &r.key, r.writer, r.time);
            }
            revived.charge(&r.key, r.writer);
        }
        revived.commit()
    }

    /// Applies another front-end's release, with commits held off.
    pub(super) fn apply_release(&self, release: &Release) -> Result<(), StoreError> {
        self.keep_cutoff(release.writer, release.cutoff)?;
        let keys = crate::prune::candidates(self, release.writer, release.cutoff)?;
        let mut outcome = crate::prune::PruneCommitted::default();
        for step in keys.chunks(crate::prune::STEP) {
            crate::prune::release_held(self, release.writer, release.cutoff, step, &mut outcome)?;
        }
        if outcome.dead_blocks > 0 {
            tracing::debug!(
                writer = release.writer,
                dead = outcome.dead_blocks,
                "another front-end's prune let blocks go"
            );
        }
        Ok(())
    }
}

/// One batch of references that may bring dead blocks back.
struct Revival<'a> {
    engine: &'a S3Engine,
    batch: WriteBatch,
    meta: crate::index::Meta,
    /// Blocks brought back in this batch, with their locations.
    revived: HashMap<BlockKey, PackLocation>,
    /// Those of them charged to a new payer already.
    charged: HashSet<BlockKey>,
    charges: Vec<(u32, u64)>,
}

impl<'a> Revival<'a> {
    fn new(engine: &'a S3Engine) -> Revival<'a> {
        Revival {
            engine,
            batch: WriteBatch::default(),
            meta: engine.index.meta(),
            revived: HashMap::new(),
            charged: HashSet::new(),
            charges: Vec::new(),
        }
    }

    /// Whether `key` is stored, bringing it back from table `Dead` if it
    /// died (its key returns to the index in this batch).
    fn present(&mut self, key: &BlockKey) -> Result<bool, StoreError> {
        if self.revived.contains_key(key) || self.engine.index.contains(key)? {
            return Ok(true);
        }
        let dead_key = Table::Dead.key(&key.to_bytes());
        let Some(value) = self.engine.index.db().get(&dead_key)? else {
            return Ok(false);
        };
        let Some(loc) = PackLocation::decode(&value) else {
            return Ok(false);
        };
        self.batch.put(key.to_bytes(), loc.encode());
        self.batch.delete(&dead_key);
        self.meta = self.meta.plus(loc.len as usize);
        self.revived.insert(*key, loc);
        Ok(true)
    }

    /// Where a block brought back in this batch lies.
    fn location(&self, key: &BlockKey) -> Option<PackLocation> {
        self.revived.get(key).copied()
    }

    /// Charges a block brought back in this batch to its first new
    /// holder (who pays for it from now on: table `Payers`).
    fn charge(&mut self, key: &BlockKey, writer: u32) {
        let Some(loc) = self.revived.get(key) else {
            return;
        };
        if !self.charged.insert(*key) {
            return;
        }
        self.charges.push((writer, u64::from(loc.len)));
        self.batch
            .put(Table::Payers.key(&key.to_bytes()), writer.to_be_bytes());
    }

    fn commit(self) -> Result<(), StoreError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.engine
            .index
            .commit(self.batch, self.charges, self.meta, Wal::Off)
    }
}
