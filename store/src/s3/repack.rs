//! Giving space back on a bucket: a prune leaves dead blocks inside
//! packs; a *repack* copies the live blocks of packs that are mostly dead
//! into new packs and removes the old ones. Front-ends go on serving
//! meanwhile, and none of them may be left relying on a removed pack.
//!
//! One front-end repacks at a time: the one holding the *lease* (a shared
//! record, taken by compare-and-swap, `lease_secs` long). Its plan goes
//! through three phases, each published as `repack/plans/<generation>`;
//! every front-end applies a phase at its next poll and says so in its
//! heartbeat (`frontends/<id>`), and the repacker waits for every live
//! front-end (one whose heartbeat is younger than `lease_secs`) before it
//! moves on:
//! 1. **retire**: a front-end stops taking a block in those packs as
//!    already stored (a write stores it anew), then makes every
//!    reference it shared so far durable. After every front-end has done
//!    so, no reference to a block in them can appear that the repacker
//!    has not read.
//! 2. **moved**: the repacker reads every front-end's references, copies
//!    each block in the packs that any writer still holds (with its
//!    holders) into its own packs, and publishes how far they go; a
//!    front-end answers once it has read that far (its reads go to the
//!    copies from then on).
//! 3. **done**: the repacker empties the old packs' indexes (keeping each
//!    front-end's sequence whole) and removes the packs.
//!
//! A front-end whose heartbeat is older than half the lease answers no
//! sync before it has looked for plans again; one that finds it missed a
//! plan's retiring (it stalled, and was passed over) fails its next sync
//! if a block it took as stored since its last sync was in those packs,
//! so it never acknowledges a write that relied on a removed pack.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rocksdb::{IteratorMode, WriteBatch};

use super::pack::{PackEntry, PackId, PackIndex, PackLocation, RefEntry};
use super::plan::{Heartbeat, Lease, Phase, Plan};
use super::S3Engine;
use crate::compact::{CompactOptions, CompactReport};
use crate::keyspace::Table;
use crate::log::record::HEADER_LEN;
use crate::{BlockKey, StoreError};

/// A removed pack's length in table `Packs`.
pub(super) const GONE: u64 = u64::MAX;

/// The lease's record id.
const LEASE: &[u8] = b"lease";

/// What the engine keeps of the repacks it follows.
#[derive(Default)]
pub(super) struct Following {
    /// The phase applied of each plan seen.
    applied: HashMap<u64, Phase>,
    /// When the heartbeat was last written, and what it said.
    written: Option<(Instant, u64, u8)>,
    /// Why this front-end may write no more: another closed its folder,
    /// taking it for gone, while it stalled.
    evicted: Option<String>,
}

impl S3Engine {
    /// The packs being retired or removed, from the local index (at open).
    pub(super) fn load_gone_packs(&self) -> Result<HashSet<PackId>, StoreError> {
        let mut gone = HashSet::new();
        for (id, v) in self.index.scan(Table::Packs)? {
            if let (Some(pack), Ok(len)) = (pack_of_id(&id), <[u8; 8]>::try_from(v.as_slice())) {
                if u64::from_be_bytes(len) == GONE {
                    gone.insert(pack);
                }
            }
        }
        Ok(gone)
    }

    /// Records a pack's length (for choosing what to repack).
    pub(super) fn note_pack(&self, batch: &mut WriteBatch, pack: PackId, len: u64) {
        if len > 0 {
            batch.put(Table::Packs.key(&pack_id(pack)), len.to_be_bytes());
        }
    }

    /// Applies the repack plans published since the last look, and
    /// writes this front-end's heartbeat if it changed or ages.
    pub(super) fn follow_plans(&self) -> Result<(), StoreError> {
        let listed: Vec<u64> = self
            .bucket
            .list(&self.names.plan_root(), None)?
            .iter()
            .filter_map(|n| self.names.parse_plan(n))
            .collect();
        let mut following = self.following.lock().expect("following lock");
        for generation in &listed {
            if following.applied.get(generation) == Some(&Phase::Done) {
                continue;
            }
            let name = self.names.plan(*generation);
            let Some(plan) = self.bucket.get(&name)?.and_then(|(b, _)| Plan::decode(&b)) else {
                continue;
            };
            if !following.applied.contains_key(generation) {
                // With commits held off: a reference taken after this
                // sees the pack retiring and is refused (`holders.rs`).
                let commit = self.commit_lock.lock().expect("commit lock");
                self.retiring
                    .write()
                    .expect("retiring lock")
                    .extend(plan.packs.iter().copied());
                drop(commit);
                if plan.phase > Phase::Retire {
                    // This front-end missed the retiring (it stalled, and
                    // was passed over): a block it took as stored since
                    // its last sync may be one no copy was made of.
                    self.poison_missed(&plan.packs)?;
                }
                // Every reference made before a block in those packs
                // stopped counting as stored, shared before saying so.
                self.seal_and_wait()?;
                following.applied.insert(*generation, Phase::Retire);
            }
            if plan.phase >= Phase::Moved && following.applied[generation] < Phase::Moved {
                let read = self
                    .progress
                    .lock()
                    .expect("progress lock")
                    .get(&plan.repacker)
                    .copied()
                    .unwrap_or(0);
                if plan.repacker != self.me && read < plan.moved_through {
                    continue;
                }
                following.applied.insert(*generation, Phase::Moved);
            }
            if plan.phase == Phase::Done && following.applied[generation] < Phase::Done {
                self.forget_packs(&plan.packs)?;
                crate::prune::count_space(self, -(plan.freed as i64), plan.freed)?;
                following.applied.insert(*generation, Phase::Done);
            }
        }
        // A plan given up before it was done: its packs stay.
        let listed: HashSet<u64> = listed.into_iter().collect();
        let abandoned: Vec<u64> = following
            .applied
            .iter()
            .filter(|(g, p)| !listed.contains(g) && **p != Phase::Done)
            .map(|(g, _)| *g)
            .collect();
        if !abandoned.is_empty() {
            let gone = self.load_gone_packs()?;
            let mut retiring = self.retiring.write().expect("retiring lock");
            retiring.retain(|p| gone.contains(p));
            for g in abandoned {
                following.applied.remove(&g);
            }
        }
        let (generation, phase) = following
            .applied
            .iter()
            .map(|(g, p)| (*g, *p as u8))
            .max()
            .unwrap_or((0, 0));
        let silent = following
            .written
            .is_none_or(|(at, _, _)| at.elapsed() >= self.lease() / 2);
        if silent && following.evicted.is_none() {
            // Silent long enough to have been taken for gone: look
            // whether another front-end closed this one's folder.
            if self.bucket.get(&self.names.closed(self.me))?.is_some() {
                tracing::error!(frontend = %format!("{:016x}", self.me), "this front-end was taken for gone while it stalled and its folder closed: it refuses every sync; restart it");
                following.evicted = Some(format!(
                    "this server (front-end {:016x}) stalled for longer than {} s and was taken for gone by the others: restart it",
                    self.me,
                    self.gone_after()
                ));
            }
        }
        let stale = following.written.is_none_or(|(at, g, p)| {
            (g, p) != (generation, phase) || at.elapsed() >= self.lease() / 4
        });
        if stale {
            let beat = Heartbeat {
                generation,
                phase,
                time: crate::refs::now(),
            };
            self.bucket.put(
                &self.names.heartbeat(self.me),
                Bytes::copy_from_slice(&beat.encode()),
            )?;
            following.written = Some((Instant::now(), generation, phase));
        }
        Ok(())
    }

    /// Seconds of silence after which a front-end is gone for good
    /// (never less than the lease: a stalled one must first be passed
    /// over, and fence itself).
    fn gone_after(&self) -> u64 {
        self.options.gone_secs.max(self.lease().as_secs())
    }

    fn lease(&self) -> Duration {
        Duration::from_secs(self.options.lease_secs.max(4))
    }

    /// Before a sync is answered: a front-end that has not looked for
    /// plans for half the lease may have been taken for gone, and must
    /// look again first (see the module documentation).
    pub(super) fn fence(&self) -> Result<(), StoreError> {
        let fresh = self
            .following
            .lock()
            .expect("following lock")
            .written
            .is_some_and(|(at, _, _)| at.elapsed() < self.lease() / 2);
        if !fresh {
            crate::engine::Engine::refresh(self)?;
        }
        if let Some(why) = &self.following.lock().expect("following lock").evicted {
            return Err(StoreError::Failed(why.clone()));
        }
        let poisoned = std::mem::take(&mut *self.poisoned.lock().expect("poisoned lock"));
        if let Some(key) = poisoned.first() {
            tracing::warn!(score = %key.score, blocks = poisoned.len(), "blocks taken as stored during a stall were removed by a repack");
            return Err(StoreError::SendAgain(format!(
                "block {} (and {} more) taken as stored was removed by a repack while this server stalled: send them again",
                key.score,
                poisoned.len() - 1
            )));
        }
        Ok(())
    }

    /// Of the blocks taken as stored since the last sync, those in
    /// `packs`: the next sync fails, naming them.
    fn poison_missed(&self, packs: &[PackId]) -> Result<(), StoreError> {
        let packs: HashSet<PackId> = packs.iter().copied().collect();
        let taken = self.unfenced.lock().expect("unfenced lock").clone();
        let mut bad = Vec::new();
        for key in taken {
            let here = self.index.get(&key)?.and_then(|v| PackLocation::decode(&v));
            if here.is_none_or(|l| packs.contains(&l.pack)) {
                bad.push(key);
            }
        }
        self.poisoned.lock().expect("poisoned lock").extend(bad);
        Ok(())
    }

    /// Marks removed packs gone for good and drops the dead blocks that
    /// lay in them (nothing can bring those back any more).
    fn forget_packs(&self, packs: &[PackId]) -> Result<(), StoreError> {
        let packs: HashSet<PackId> = packs.iter().copied().collect();
        let _commit = self.commit_lock.lock().expect("commit lock");
        let mut batch = WriteBatch::default();
        for p in &packs {
            batch.put(Table::Packs.key(&pack_id(*p)), GONE.to_be_bytes());
        }
        let prefix = Table::Dead.prefix();
        let db = self.index.db();
        for item in db.iterator(IteratorMode::From(prefix, rocksdb::Direction::Forward)) {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            if PackLocation::decode(&v).is_some_and(|l| packs.contains(&l.pack)) {
                batch.delete(&k);
            }
        }
        db.write(batch)?;
        Ok(())
    }

    /// One repack pass (`Engine::compact`): takes the lease or leaves the
    /// work to its holder, chooses the packs whose live fraction is below
    /// `options.live_below`, and removes them through the three phases.
    pub(super) fn repack(&self, options: &CompactOptions) -> Result<CompactReport, StoreError> {
        let mut report = CompactReport::default();
        let Some(lease) = self.take_lease()? else {
            return Ok(report);
        };
        let outcome = self.repack_under(lease, options, &mut report);
        if let Err(e) = self.give_lease_back(lease) {
            tracing::warn!(error = %e, "cannot give the repack lease back; it expires by itself");
        }
        outcome.map(|()| report)
    }

    fn repack_under(
        &self,
        lease: Lease,
        options: &CompactOptions,
        report: &mut CompactReport,
    ) -> Result<(), StoreError> {
        crate::engine::Engine::refresh(self)?;
        self.close_gone_front_ends()?;
        let (packs, lens) = self.choose(options.live_below, report)?;
        if packs.is_empty() {
            return Ok(());
        }
        let mut plan = Plan {
            generation: lease.generation,
            phase: Phase::Retire,
            repacker: self.me,
            moved_through: 0,
            freed: 0,
            packs: packs.clone(),
        };
        let name = self.names.plan(plan.generation);
        self.bucket.put(&name, Bytes::from(plan.encode()))?;
        tracing::info!(
            generation = plan.generation,
            packs = packs.len(),
            "repack: retiring packs"
        );
        if !self.wait_for_all(&plan)? {
            return self.abandon(&plan, "front-ends did not apply the plan within the lease");
        }
        // Every reference to a block in them is in the bucket now.
        crate::engine::Engine::refresh(self)?;
        let through = self.copy_live(&packs, options, report)?;
        plan.phase = Phase::Moved;
        plan.moved_through = through;
        self.bucket.put(&name, Bytes::from(plan.encode()))?;
        if !self.wait_for_all(&plan)? {
            return self.abandon(&plan, "front-ends did not read the copies within the lease");
        }
        let empty = Bytes::from(PackIndex::default().encode());
        for p in &packs {
            self.bucket.put(&self.names.index(*p), empty.clone())?;
            self.bucket.delete(&self.names.pack(*p))?;
            report.removed += 1;
            report.bytes_freed += lens[p];
        }
        report.bytes_freed = report.bytes_freed.saturating_sub(report.bytes_copied);
        plan.phase = Phase::Done;
        plan.freed = report.bytes_freed;
        self.bucket.put(&name, Bytes::from(plan.encode()))?;
        self.follow_plans()?;
        // Older plans are done or given up: nobody needs them.
        for old in self.bucket.list(&self.names.plan_root(), None)? {
            if self
                .names
                .parse_plan(&old)
                .is_some_and(|g| g < plan.generation)
            {
                self.bucket.delete(&old)?;
            }
        }
        tracing::info!(
            generation = plan.generation,
            packs = report.removed,
            blocks_copied = report.blocks_copied,
            bytes_freed = report.bytes_freed,
            "repack done"
        );
        Ok(())
    }

    /// Closes the folders of front-ends gone for good (killed, or
    /// silent for `gone_secs`), as their own clean
    /// shutdown would have: the others stop listing them. Their packs
    /// without an index (sent as they died) are removed. One that was
    /// only stalled finds its folder closed and refuses every sync.
    fn close_gone_front_ends(&self) -> Result<(), StoreError> {
        let now = crate::refs::now();
        let gone_after = self.gone_after();
        for (fe, beat) in self.heartbeats()? {
            if fe == self.me || now.saturating_sub(beat.time) < gone_after {
                continue;
            }
            let name = self.names.heartbeat(fe);
            let closed = self.names.closed(fe);
            let listed = self.bucket.list(&self.names.index_folder(fe), None)?;
            let written = match self.bucket.get(&closed)? {
                Some((b, _)) => std::str::from_utf8(&b)
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok()),
                None => None,
            };
            let count = match written {
                Some(n) => n,
                None => {
                    // Its indexes are written in order: the whole prefix.
                    let mut n = 0;
                    for id in listed.iter().filter_map(|l| self.names.parse_index(l)) {
                        if id.frontend == fe && id.seq == n {
                            n += 1;
                        }
                    }
                    self.bucket.put(&closed, Bytes::from(format!("{n}\n")))?;
                    n
                }
            };
            let mut orphans = 0;
            for pack in self.bucket.list(&self.names.pack_folder(fe), None)? {
                if self.names.parse_pack(&pack).is_some_and(|p| p.seq >= count) {
                    self.bucket.delete(&pack)?;
                    orphans += 1;
                }
            }
            self.bucket.delete(&name)?;
            tracing::info!(
                frontend = %format!("{fe:016x}"),
                packs = count,
                orphans,
                "closed the folder of a front-end gone for good"
            );
        }
        Ok(())
    }

    /// Gives a plan up (its packs stay, copies made are only extra).
    fn abandon(&self, plan: &Plan, why: &str) -> Result<(), StoreError> {
        tracing::warn!(
            generation = plan.generation,
            why,
            "repack given up; the packs stay"
        );
        self.bucket.delete(&self.names.plan(plan.generation))?;
        Err(StoreError::Failed(format!("repack given up: {why}")))
    }

    /// The packs to remove (live fraction below `live_below`), and every
    /// pack's length.
    fn choose(
        &self,
        live_below: f64,
        report: &mut CompactReport,
    ) -> Result<(Vec<PackId>, HashMap<PackId, u64>), StoreError> {
        let own_durable = self.uploads.durable();
        let mut lens = HashMap::new();
        for (id, v) in self.index.scan(Table::Packs)? {
            if let (Some(p), Ok(len)) = (pack_of_id(&id), <[u8; 8]>::try_from(v.as_slice())) {
                let len = u64::from_be_bytes(len);
                let unsent = p.frontend == self.me && p.seq >= own_durable;
                if len != GONE && !unsent {
                    lens.insert(p, len);
                }
            }
        }
        let mut live: HashMap<PackId, u64> = HashMap::new();
        for item in self.index.db().iterator(IteratorMode::Start) {
            let (k, v) = item?;
            if BlockKey::from_bytes(&k).is_none() {
                continue;
            }
            if let Some(loc) = PackLocation::decode(&v) {
                *live.entry(loc.pack).or_default() += HEADER_LEN as u64 + u64::from(loc.len);
            }
        }
        report.segments = lens.len() as u64;
        let mut chosen: Vec<(f64, PackId)> = lens
            .iter()
            .map(|(p, len)| (live.get(p).copied().unwrap_or(0) as f64 / *len as f64, *p))
            .filter(|(fraction, _)| *fraction < live_below)
            .collect();
        chosen.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        // A bounded pass: the emptiest packs first, then the next pass.
        chosen.truncate(MAX_PACKS_PER_PASS);
        Ok((chosen.into_iter().map(|(_, p)| p).collect(), lens))
    }

    /// Copies every indexed block of `packs` into this front-end's
    /// packs, as moved blocks with their holders; returns the sequence
    /// below which every copy is durable.
    fn copy_live(
        &self,
        packs: &[PackId],
        options: &CompactOptions,
        report: &mut CompactReport,
    ) -> Result<u64, StoreError> {
        let packs: HashSet<PackId> = packs.iter().copied().collect();
        let mut found = Vec::new();
        for item in self.index.db().iterator(IteratorMode::Start) {
            let (k, v) = item?;
            let Some(key) = BlockKey::from_bytes(&k) else {
                continue;
            };
            if let Some(loc) = PackLocation::decode(&v).filter(|l| packs.contains(&l.pack)) {
                found.push((key, loc));
            }
        }
        // In pack order, so that reads run through each pack once.
        found.sort_by_key(|(_, l)| (l.pack, l.offset));
        let started = Instant::now();
        for (key, loc) in found {
            if options.stopped() {
                return Err(StoreError::Failed("repack stopped (shutdown)".into()));
            }
            let record = self.read_record(&loc)?.ok_or_else(|| {
                StoreError::BadLocation(key.score, "its pack ends before it".into())
            })?;
            let _commit = self.commit_lock.lock().expect("commit lock");
            // Let go of, or stored anew elsewhere, meanwhile: nothing to copy.
            let Some(now_at) = self.index.get(&key)?.and_then(|v| PackLocation::decode(&v)) else {
                continue;
            };
            if now_at != loc {
                continue;
            }
            let payer = self
                .index
                .get_record(Table::Payers, &key.to_bytes())?
                .and_then(|v| v.as_slice().try_into().ok().map(u32::from_be_bytes))
                .unwrap_or(loc.writer);
            let holders = self.index.holders(&key)?;
            let mut open = self.open.lock().expect("open pack lock");
            let offset = open.data.len() as u64;
            open.data.extend_from_slice(&record);
            let entry = PackEntry {
                key,
                len: loc.len,
                writer: payer,
                offset,
            };
            open.index.moved.push(entry);
            open.index
                .refs
                .extend(holders.iter().map(|(writer, time)| RefEntry {
                    key,
                    writer: *writer,
                    time: *time,
                }));
            let pack = PackId {
                frontend: self.me,
                seq: open.seq,
            };
            let mut moved_to = PackLocation::of(pack, &entry);
            moved_to.writer = loc.writer;
            self.index.db().put(key.to_bytes(), moved_to.encode())?;
            report.blocks_copied += 1;
            report.bytes_copied += record.len() as u64;
            if open.data.len() as u64 >= self.options.pack_bytes {
                self.seal(&mut open);
            }
            drop(open);
            drop(_commit);
            if let Some(rate) = options.bytes_per_second {
                let due = Duration::from_secs_f64(report.bytes_copied as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        self.seal_and_wait()?;
        Ok(self.open.lock().expect("open pack lock").seq)
    }

    /// Waits until every live front-end has applied `plan` as far as it
    /// goes; `false` if one did not within the lease.
    fn wait_for_all(&self, plan: &Plan) -> Result<bool, StoreError> {
        // Twice the lease: a front-end that stalled ages out first.
        let deadline = Instant::now() + 2 * self.lease();
        loop {
            self.follow_plans()?;
            let mut waiting = Vec::new();
            let now = crate::refs::now();
            for (fe, beat) in self.heartbeats()? {
                let alive = now.saturating_sub(beat.time) < self.lease().as_secs();
                let mine = fe == self.me;
                if alive && !beat.has_applied(plan.generation, plan.phase) && !mine {
                    waiting.push(fe);
                }
            }
            if waiting.is_empty() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                tracing::warn!(front_ends = ?waiting, "repack: front-ends alive but not answering");
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(
                self.options.poll_millis.clamp(50, 1000),
            ));
        }
    }

    /// Every front-end's heartbeat that can be read, by front-end.
    fn heartbeats(&self) -> Result<Vec<(u64, Heartbeat)>, StoreError> {
        let mut beats = Vec::new();
        for name in self.bucket.list(&self.names.heartbeat_root(), None)? {
            let Some(fe) = self.names.parse_heartbeat(&name) else {
                continue;
            };
            if let Some(beat) = self
                .bucket
                .get(&name)?
                .and_then(|(b, _)| Heartbeat::decode(&b))
            {
                beats.push((fe, beat));
            }
        }
        Ok(beats)
    }

    /// Takes the lease if it is free, expired, or this front-end's.
    fn take_lease(&self) -> Result<Option<Lease>, StoreError> {
        let current = self.record_get(Table::Repack, LEASE)?;
        let held = current.as_deref().and_then(Lease::decode);
        let now = crate::refs::now();
        if held.is_some_and(|l| l.holder != self.me && l.expires > now) {
            return Ok(None);
        }
        let lease = Lease {
            holder: self.me,
            generation: held.map_or(1, |l| l.generation + 1),
            // Long enough for both waits and the copying between them.
            expires: now + 4 * self.lease().as_secs() + 3600,
        };
        let taken = self.record_swap(Table::Repack, LEASE, current.as_deref(), &lease.encode())?;
        Ok(taken.then_some(lease))
    }

    fn give_lease_back(&self, lease: Lease) -> Result<(), StoreError> {
        let mut free = lease;
        free.expires = 0;
        self.record_swap(Table::Repack, LEASE, Some(&lease.encode()), &free.encode())
            .map(|_| ())
    }
}

/// Packs removed in one pass at most (the emptiest first).
const MAX_PACKS_PER_PASS: usize = 64;

/// A pack's id in table `Packs`: frontend[8] seq[8].
fn pack_id(p: PackId) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&p.frontend.to_be_bytes());
    id[8..].copy_from_slice(&p.seq.to_be_bytes());
    id
}

fn pack_of_id(id: &[u8]) -> Option<PackId> {
    (id.len() == 16).then(|| PackId {
        frontend: u64::from_be_bytes(id[..8].try_into().expect("8")),
        seq: u64::from_be_bytes(id[8..].try_into().expect("8")),
    })
}
