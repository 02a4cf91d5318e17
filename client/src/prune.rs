//! `eventi prune`'s engine: tell each store of the circle which of the
//! key's blocks are still needed, so that it lets go of the rest
//! (`docs/STORAGE.md`, "Reclaiming space").
//!
//! For every store that can prune (an eventi-server where the key is
//! authorized, or the embedded store):
//! 1. **begin** a marking there; the reply names the key's heads there;
//! 2. the **live set** is every block reachable from those heads (each
//!    verified against the key: a server cannot slip a root in), from
//!    this home's own head, and from the drops this home made: the kept
//!    snapshots of the chain (through its history record), the machine
//!    list, each capability's envelope and tree;
//! 3. **mark** the live set there (it says which blocks it lacks);
//! 4. **commit**: the store raises the key's epoch and lets go of what
//!    was neither marked nor stored within its grace period. A head set
//!    since the marking began (a backup finished meanwhile) makes it
//!    refuse; the marking is then done again, up to three times.
//!
//! The home's cache then forgets what the prune may have taken and
//! enters the new epoch. A plain venti server cannot give space back: it
//! is named and left as it is.

use std::collections::HashSet;
use std::time::Instant;

use anyhow::{bail, Context};
use eventi_shared::codec::prune::{PruneCommitted, PruneStatus};
use eventi_shared::{head, BlockType, Score};
use eventi_store::compact::CompactReport;

use crate::check::{self, Needed};
use crate::format::capability::{self, Capability};
use crate::format::dirent::Entry;
use crate::home::cache::Cache;
use crate::repo::Repo;
use crate::store::prune::Prunable;

/// Markings tried per store before giving up on one whose heads keep
/// moving (backups finishing during each).
const ATTEMPTS: usize = 3;

/// What the prune did on one store.
#[derive(Debug, Default, serde::Serialize)]
pub struct StoreReport {
    /// The store's name.
    pub name: String,
    /// Its address.
    pub address: String,
    /// Why nothing was done there (a plain venti server, down), if so.
    pub skipped: Option<String>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Blocks marked as still needed.
    pub marked: u64,
    /// Of those, blocks the store lacks (`eventi repair` copies them).
    pub missing: u64,
    /// What the commit let go of, and the key's epoch after it (before
    /// it, on a dry run).
    #[serde(flatten)]
    pub committed: PruneCommitted,
    /// The store's grace period in seconds (what is newer stays).
    pub grace_secs: u64,
    /// For the embedded store: the compaction that followed.
    pub compacted: Option<Compacted>,
    /// Seconds spent working out the live set (reading the kept trees).
    pub walk_secs: f64,
    /// Seconds spent marking it on the store.
    pub mark_secs: f64,
    /// Seconds the store took to commit (and, embedded, to compact).
    pub commit_secs: f64,
}

/// What compacting the embedded store gave back.
#[derive(Debug, Default, serde::Serialize)]
pub struct Compacted {
    /// Segments removed.
    pub segments: u64,
    /// Bytes of live blocks copied forward.
    pub bytes_copied: u64,
    /// Bytes given back to the filesystem.
    pub bytes_freed: u64,
}

impl From<CompactReport> for Compacted {
    fn from(r: CompactReport) -> Compacted {
        Compacted {
            segments: r.removed,
            bytes_copied: r.bytes_copied,
            bytes_freed: r.bytes_freed,
        }
    }
}

/// The blocks to keep: every root walked, and each block once.
pub struct LiveSet {
    /// Snapshot roots and history records the heads reach.
    pub roots: Vec<Score>,
    /// The drops kept (envelope scores).
    pub drops: usize,
    /// Every block, once.
    pub blocks: Vec<Needed>,
}

impl LiveSet {
    /// The blocks as store keys.
    pub fn keys(&self) -> Vec<(Score, BlockType)> {
        self.blocks
            .iter()
            .map(|n| (n.score, BlockType::DATA))
            .collect()
    }

    /// The blocks' scores.
    pub fn scores(&self) -> HashSet<Score> {
        self.blocks.iter().map(|n| n.score).collect()
    }
}

/// The roots of the heads `heads` (name, sequence) that `store` keeps
/// for this key, each checked against the key's signature.
fn roots_of(
    repo: &Repo,
    store: &dyn Prunable,
    heads: &[(String, u64)],
) -> anyhow::Result<Vec<Score>> {
    let key = repo.key.write_public().to_bytes();
    let mut roots = Vec::new();
    for (name, _) in heads {
        let Some(signed) = store.head(key, name)? else {
            continue;
        };
        if !head::verify(&key, name, &signed) {
            bail!("its head {name} does not verify against this key: refusing to prune by it");
        }
        roots.push(signed.root);
    }
    Ok(roots)
}

/// Every block reachable from `heads` (roots of chains) and from this
/// home's drops.
pub fn live_set(repo: &Repo, heads: &[Score]) -> anyhow::Result<LiveSet> {
    let mut roots: Vec<Score> = Vec::new();
    let mut seen = HashSet::new();
    for head in heads {
        let chain = repo
            .walk_chain(Some(*head))
            .with_context(|| format!("walking the chain from {head}"))?;
        for (score, _) in &chain.records {
            if seen.insert(*score) {
                roots.push(*score);
            }
        }
        for (score, _, _) in &chain.snapshots {
            if seen.insert(*score) {
                roots.push(*score);
            }
        }
    }
    let mut drops: Vec<(Score, Entry)> = Vec::new();
    for line in crate::home::drops::list(&repo.home)? {
        let cap = Capability::parse(&line).context("a drop recorded in the home")?;
        let block = repo
            .store()
            .get(cap.score, BlockType::DATA)
            .with_context(|| format!("reading the envelope of drop {}", cap.score))?;
        let envelope = capability::open(&cap, &block)?;
        drops.push((cap.score, envelope.entry));
    }
    let blocks = check::blocks_with(repo, &roots, &drops)?;
    Ok(LiveSet {
        roots,
        drops: drops.len(),
        blocks,
    })
}

/// The heads to walk for a store: its own (verified), and this home's.
fn heads_for(
    repo: &Repo,
    store: &dyn Prunable,
    status: &PruneStatus,
) -> anyhow::Result<Vec<Score>> {
    let mut roots = roots_of(repo, store, &status.heads)?;
    if let Some(own) = repo.head()? {
        roots.push(own);
    }
    Ok(roots)
}

/// Prunes every store of the circle that can; `dry_run` only works out
/// and reports the live set on each.
pub fn prune(repo: &Repo, dry_run: bool) -> anyhow::Result<Vec<StoreReport>> {
    repo.key.full("prune")?;
    let circle = repo.destination.circle();
    let mut reports = Vec::new();
    let mut marked: Vec<(crate::store::circle::MemberId, HashSet<Score>, u64)> = Vec::new();
    for (index, member) in circle.members().iter().enumerate() {
        let mut report = StoreReport {
            name: member.name.clone(),
            address: member.address.clone(),
            ..StoreReport::default()
        };
        let Some(store) = circle.store_of(index) else {
            report.skipped = Some(member.why_down().unwrap_or_else(|| "down".into()));
            reports.push(report);
            continue;
        };
        let Some(prunable) = store.prunable() else {
            report.skipped = Some("this store cannot reclaim space".into());
            reports.push(report);
            continue;
        };
        match prune_one(repo, prunable, dry_run, &mut report) {
            Ok(Some(live)) => marked.push((member.id, live, report.committed.epoch)),
            Ok(None) => {}
            Err(e) => report.error = Some(format!("{e:#}")),
        }
        reports.push(report);
    }
    if !marked.is_empty() {
        update_cache(repo, &marked)?;
    }
    Ok(reports)
}

/// Keeps this home's cache valid after its own prune. A backup running
/// beside the prune holds the cache: it is then left as it is, and the
/// next backup, finding the new epoch, drops what it knew of the store.
fn update_cache(
    repo: &Repo,
    marked: &[(crate::store::circle::MemberId, HashSet<Score>, u64)],
) -> anyhow::Result<()> {
    let cache_dir = repo.cache_dir()?;
    crate::home::create_private_dir(&cache_dir)?;
    let cache = match Cache::open(&cache_dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "eventi: the cache was left as it is ({e}); the next backup reads every file again"
            );
            return Ok(());
        }
    };
    for (member, live, epoch) in marked {
        cache.after_prune(*member, live, *epoch)?;
    }
    Ok(())
}

/// Prunes one store; the live set it marked, unless `dry_run` or the
/// store cannot prune.
fn prune_one(
    repo: &Repo,
    store: &dyn Prunable,
    dry_run: bool,
    report: &mut StoreReport,
) -> anyhow::Result<Option<HashSet<Score>>> {
    let Some(status) = store.prune_status()? else {
        report.skipped = Some(
            "it cannot reclaim space (a plain venti server, or one where this key is not authorized)"
                .into(),
        );
        return Ok(None);
    };
    report.grace_secs = status.grace;
    report.committed.epoch = status.epoch;
    if dry_run {
        let live = live_set(repo, &heads_for(repo, store, &status)?)?;
        report.marked = live.blocks.len() as u64;
        return Ok(None);
    }
    let mut last_refusal = String::new();
    for _ in 0..ATTEMPTS {
        let started = Instant::now();
        let status = store.prune_begin()?;
        let live = live_set(repo, &heads_for(repo, store, &status)?)?;
        report.walk_secs = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let present = store.prune_mark(&live.keys())?;
        report.marked = present.len() as u64;
        report.missing = present.iter().filter(|p| !**p).count() as u64;
        report.mark_secs = started.elapsed().as_secs_f64();
        let started = Instant::now();
        match store.prune_commit(status.heads.clone()) {
            Ok(done) => {
                report.committed = done;
                if let Some(c) = store.compact()? {
                    report.compacted = Some(c.into());
                }
                report.commit_secs = started.elapsed().as_secs_f64();
                return Ok(Some(live.scores()));
            }
            Err(e) if e.to_string().contains("heads moved") => {
                last_refusal = e.to_string();
            }
            Err(e) => return Err(e.into()),
        }
    }
    bail!("the key's heads kept moving during {ATTEMPTS} markings (backups finishing meanwhile): {last_refusal}")
}
