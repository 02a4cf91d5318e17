//! `eventi check` and `eventi repair`'s engine: which blocks the chosen
//! snapshots are made of, which of them each server of the circle lacks
//! (by eventi's presence query, many scores per request, or by reads on a
//! plain venti server), with `--read-data` whether each server's copy of
//! every block passes its SHA-256 check and decrypts, and the copying of
//! what a server lacks from a server that has it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use bytes::Bytes;
use eventi_shared::{BlockType, Score};
use rayon::prelude::*;

use crate::format::block::{self, Ref};
use crate::format::dirent::{Entry, Kind};
use crate::repo::Repo;

/// Contents below this size are one block in every format (the smallest
/// chunk before extents was 16 KiB; since, a content of up to
/// `chunk::MAX_CHUNK` bytes is one block), so they are listed without
/// fetching anything.
const ONE_BLOCK_BELOW: u64 = 16 * 1024;
use crate::store::circle::Circle;
use crate::store::{BlockStore, StoreError};
use crate::stream;
use crate::walk::{self, WalkError};

/// A block the snapshots need: its score, and its reference (key and
/// SHA-256) unless it is a snapshot root (sealed to the owner's key and
/// checked by its SHA-1 and signature instead).
#[derive(Clone, Copy, Debug)]
pub struct Needed {
    /// Its score.
    pub score: Score,
    /// How to check and open it.
    pub r: Option<Ref>,
}

/// Every block of the snapshots `roots` (their roots, their trees, every
/// directory and file), each once; a history record among `roots` is one
/// block. Reads the directories and pointer
/// blocks (through the circle, from any server), not the file data: a
/// file smaller than the smallest chunk is one data block, and the trees
/// of bigger files are listed in parallel. A subtree already listed
/// (shared by two snapshots) is not walked again.
pub fn blocks_of(repo: &Repo, roots: &[Score]) -> anyhow::Result<Vec<Needed>> {
    blocks_with(repo, roots, &[])
}

/// [`blocks_of`], and also the blocks of `entries`: (a block that names
/// the entry, such as a capability's envelope, and the entry).
pub fn blocks_with(
    repo: &Repo,
    roots: &[Score],
    entries: &[(Score, Entry)],
) -> anyhow::Result<Vec<Needed>> {
    let store = repo.store().as_ref();
    let mut lister = Lister::default();
    let mut tops: Vec<Entry> = Vec::new();
    for root in roots {
        if !lister.seen.insert(*root) {
            continue;
        }
        lister.out.push(Needed {
            score: *root,
            r: None,
        });
        let snapshot = match repo.load_head_block(*root)? {
            crate::repo::HeadBlock::Snapshot(snapshot, _) => *snapshot,
            // A history record (forget's): one block, nothing below it.
            crate::repo::HeadBlock::History(_) => continue,
        };
        if snapshot.tags.iter().any(|t| t == crate::machines::TAG) {
            // The machine list: its tree is a stream of lines, no directory.
            stream::for_each_ref(store, &snapshot.tree, &mut |r, _| lister.add(r))?;
            continue;
        }
        tops.push(walk::root_entry(snapshot.tree));
    }
    for (holder, entry) in entries {
        if lister.seen.insert(*holder) {
            lister.out.push(Needed {
                score: *holder,
                r: None,
            });
        }
        tops.push(entry.clone());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(LISTING_THREADS)
        .build()?;
    lister.entries(&pool, store, &tops)?;
    lister.finish(&pool, store)
}

/// Directories and trees read at once while listing: the reads wait on
/// the network (or the disk) far more than on the cores.
const LISTING_THREADS: usize = 16;

/// What [`blocks_with`] has listed so far.
#[derive(Default)]
struct Lister {
    seen: HashSet<Score>,
    out: Vec<Needed>,
    /// Trees whose blocks are listed at the end, in parallel.
    trees: Vec<Ref>,
    queued: HashSet<Score>,
}

impl Lister {
    fn add(&mut self, r: Ref) {
        if self.seen.insert(r.score) {
            self.out.push(Needed {
                score: r.score,
                r: Some(r),
            });
        }
    }

    /// Lists `tops` and everything below them, a level of directories at
    /// a time, each level's directories read in parallel (a file's tree
    /// is queued for [`Lister::finish`]).
    fn entries(
        &mut self,
        pool: &rayon::ThreadPool,
        store: &dyn BlockStore,
        tops: &[Entry],
    ) -> anyhow::Result<()> {
        let mut level: Vec<Ref> = Vec::new();
        for e in tops {
            self.consider(e, &mut level);
        }
        while !level.is_empty() {
            let read: Vec<(Vec<Ref>, Vec<Entry>)> = pool.install(|| {
                level
                    .par_iter()
                    .map(|dir| -> Result<_, WalkError> {
                        let mut blocks = Vec::new();
                        let bytes = stream::read_all_listing(store, dir, &mut |r| blocks.push(r))?;
                        let children = crate::format::dirent::decode(&bytes).map_err(|source| {
                            WalkError::Directory {
                                score: dir.score,
                                source,
                            }
                        })?;
                        Ok((blocks, children))
                    })
                    .collect::<Result<_, _>>()
            })?;
            level = Vec::new();
            for (blocks, children) in read {
                for r in blocks {
                    self.add(r);
                }
                for e in &children {
                    self.consider(e, &mut level);
                }
            }
        }
        Ok(())
    }

    /// Lists an entry's own content: a directory's stream goes to the next
    /// level, a small file's block is listed, a big file's tree queued;
    /// content listed already (shared by two snapshots) is left.
    fn consider(&mut self, e: &Entry, level: &mut Vec<Ref>) {
        let Some(content) = e.content else {
            return;
        };
        if self.seen.contains(&content.score) || self.queued.contains(&content.score) {
            return;
        }
        match e.kind {
            Kind::Dir => {
                self.queued.insert(content.score);
                level.push(content);
            }
            _ if e.size < ONE_BLOCK_BELOW => self.add(content),
            _ => {
                self.queued.insert(content.score);
                self.trees.push(content);
            }
        }
    }

    fn finish(
        mut self,
        pool: &rayon::ThreadPool,
        store: &dyn BlockStore,
    ) -> anyhow::Result<Vec<Needed>> {
        let listed: Vec<Vec<Ref>> = pool.install(|| {
            self.trees
                .par_iter()
                .map(|t| {
                    let mut refs = Vec::new();
                    stream::for_each_ref(store, t, &mut |r, _| refs.push(r)).map(|()| refs)
                })
                .collect::<Result<_, _>>()
        })?;
        for r in listed.into_iter().flatten() {
            self.add(r);
        }
        Ok(self.out)
    }
}

/// What one server's check found.
#[derive(Debug, Default, serde::Serialize)]
pub struct MemberReport {
    /// Its name.
    pub name: String,
    /// Its address.
    pub address: String,
    /// Why it could not be checked (down, unreachable), if so.
    pub error: Option<String>,
    /// Blocks checked.
    pub blocks: u64,
    /// Scores of the blocks it lacks.
    pub missing: Vec<String>,
    /// Scores of the blocks whose copy there fails its SHA-256 check or
    /// does not decrypt (`--read-data`).
    pub damaged: Vec<String>,
    /// How it was asked: `presence` (eventi's query), `reads` (a plain
    /// venti server, or `--read-data`).
    pub method: &'static str,
    /// Bytes read from it (`--read-data`).
    pub read_bytes: u64,
}

impl MemberReport {
    /// Whether nothing is wrong with it.
    pub fn is_clean(&self) -> bool {
        self.error.is_none() && self.missing.is_empty() && self.damaged.is_empty()
    }
}

/// Blocks asked about per presence request batch (the client pipelines
/// the requests inside a batch).
const PRESENCE_BATCH: usize = 64 * 1024;

/// Checks every member of the circle for `needed`; `progress` hears the
/// blocks done (over all members).
pub fn check(
    circle: &Circle,
    needed: &[Needed],
    read_data: bool,
    progress: &(dyn Fn(u64) + Sync),
) -> Vec<MemberReport> {
    let done = AtomicU64::new(0);
    let reports: Vec<MemberReport> = (0..circle.members().len())
        .into_par_iter()
        .map(|index| {
            let member = &circle.members()[index];
            let mut report = MemberReport {
                name: member.name.clone(),
                address: member.address.clone(),
                blocks: needed.len() as u64,
                ..MemberReport::default()
            };
            let Some(store) = circle.store_of(index) else {
                report.error = Some(member.why_down().unwrap_or_else(|| "down".into()));
                return report;
            };
            let result = if read_data {
                report.method = "reads";
                read_each(store.as_ref(), needed, &mut report, &done, progress)
            } else {
                presence(store.as_ref(), needed, &mut report, &done, progress)
            };
            if let Err(e) = result {
                report.error = Some(e.to_string());
            }
            report
        })
        .collect();
    reports
}

fn presence(
    store: &dyn BlockStore,
    needed: &[Needed],
    report: &mut MemberReport,
    done: &AtomicU64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), StoreError> {
    report.method = "presence";
    for batch in needed.chunks(PRESENCE_BATCH) {
        let keys: Vec<(Score, BlockType)> =
            batch.iter().map(|n| (n.score, BlockType::DATA)).collect();
        let Some(present) = store.has(&keys)? else {
            // A plain venti server: find out by reading.
            report.method = "reads";
            return read_each(store, needed, report, done, progress);
        };
        for (n, p) in batch.iter().zip(present) {
            if !p {
                report.missing.push(n.score.to_string());
            }
        }
        progress(done.fetch_add(batch.len() as u64, Relaxed) + batch.len() as u64);
    }
    Ok(())
}

/// Reads every block from `store` (in parallel), checking each copy.
fn read_each(
    store: &dyn BlockStore,
    needed: &[Needed],
    report: &mut MemberReport,
    done: &AtomicU64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), StoreError> {
    let missing = Mutex::new(Vec::new());
    let damaged = Mutex::new(Vec::new());
    let read_bytes = AtomicU64::new(0);
    let outcome = needed.par_iter().try_for_each(|n| {
        let got = match &n.r {
            Some(r) => store
                .get_checked(n.score, BlockType::DATA, &r.check)
                .and_then(|data| {
                    read_bytes.fetch_add(data.len() as u64, Relaxed);
                    block::decrypt_checked(r, &data)
                        .map(|_| ())
                        .map_err(|_| StoreError::Damaged {
                            score: n.score,
                            store: store.name(),
                        })
                }),
            // A root: the store checks its SHA-1.
            None => store.get(n.score, BlockType::DATA).map(|data| {
                read_bytes.fetch_add(data.len() as u64, Relaxed);
            }),
        };
        progress(done.fetch_add(1, Relaxed) + 1);
        match got {
            Ok(()) => Ok(()),
            Err(StoreError::Missing { .. }) => {
                missing.lock().expect("missing").push(n.score.to_string());
                Ok(())
            }
            Err(StoreError::Damaged { .. }) => {
                damaged.lock().expect("damaged").push(n.score.to_string());
                Ok(())
            }
            Err(e) => Err(e),
        }
    });
    report.missing = missing.into_inner().expect("missing");
    report.damaged = damaged.into_inner().expect("damaged");
    report.missing.sort();
    report.damaged.sort();
    report.read_bytes = read_bytes.load(Relaxed);
    outcome
}

/// What a repair did for one server.
#[derive(Debug, Default, serde::Serialize)]
pub struct Repaired {
    /// Its name.
    pub name: String,
    /// Its address.
    pub address: String,
    /// Blocks it lacked.
    pub missing: u64,
    /// Blocks copied to it (and synced).
    pub copied: u64,
    /// Bytes copied.
    pub copied_bytes: u64,
    /// Why it is not (entirely) repaired, if so: down, refusing, or
    /// blocks that no server has.
    pub error: Option<String>,
}

/// Copies to each member the blocks its check says it lacks, from any
/// member that has them (not itself), then syncs it. `progress` hears the
/// blocks copied (over all members).
pub fn repair(
    circle: &Circle,
    reports: &[MemberReport],
    progress: &(dyn Fn(u64) + Sync),
) -> Vec<Repaired> {
    let done = AtomicU64::new(0);
    let mut out = Vec::new();
    for (index, report) in reports.iter().enumerate() {
        let member = &circle.members()[index];
        let mut r = Repaired {
            name: member.name.clone(),
            address: member.address.clone(),
            missing: report.missing.len() as u64,
            ..Repaired::default()
        };
        let Some(target) = circle.store_of(index) else {
            r.error = Some(member.why_down().unwrap_or_else(|| "down".into()));
            out.push(r);
            continue;
        };
        if report.missing.is_empty() {
            out.push(r);
            continue;
        }
        let copied = AtomicU64::new(0);
        let copied_bytes = AtomicU64::new(0);
        let lost = Mutex::new(Vec::new());
        let failure = Mutex::new(None);
        report.missing.par_iter().for_each(|hex| {
            if failure.lock().expect("failure").is_some() {
                return;
            }
            let score: Score = hex.parse().expect("a score we printed");
            match copy_from_others(circle, index, score) {
                Some(data) => {
                    let len = data.len() as u64;
                    match crate::store::put_wait(target.as_ref(), BlockType::DATA, data) {
                        Ok(_) => {
                            copied.fetch_add(1, Relaxed);
                            copied_bytes.fetch_add(len, Relaxed);
                        }
                        Err(e) => {
                            failure
                                .lock()
                                .expect("failure")
                                .get_or_insert(e.to_string());
                        }
                    }
                }
                None => lost.lock().expect("lost").push(score),
            }
            progress(done.fetch_add(1, Relaxed) + 1);
        });
        if let Err(e) = target.sync() {
            failure
                .lock()
                .expect("failure")
                .get_or_insert(e.to_string());
        }
        r.copied = copied.load(Relaxed);
        r.copied_bytes = copied_bytes.load(Relaxed);
        let lost = lost.into_inner().expect("lost");
        r.error = failure.into_inner().expect("failure").or_else(|| {
            (!lost.is_empty()).then(|| {
                format!(
                    "{} block(s) are on no server that answers, e.g. {}",
                    lost.len(),
                    lost[0]
                )
            })
        });
        out.push(r);
    }
    out
}

/// A block from any member but `except` that has a good copy (its SHA-1
/// is checked by the store; a repair copies bytes, it does not open them).
fn copy_from_others(circle: &Circle, except: usize, score: Score) -> Option<Bytes> {
    (0..circle.members().len())
        .filter(|&i| i != except)
        .filter_map(|i| circle.store_of(i))
        .find_map(|s| s.get(score, BlockType::DATA).ok())
}
