//! Forgetting snapshots: working out which of a chain's snapshots a policy
//! (or the user, by name) removes, and writing the history record that
//! makes the chain's head reach exactly the kept ones (`format/history.rs`).
//! No block is deleted here; giving space back is prune's work (not built
//! yet).

pub mod policy;

use std::collections::HashSet;

use anyhow::bail;
use eventi_shared::Score;

use crate::format::history::History;
use crate::format::snapshot::Snapshot;
use crate::repo::Repo;
use policy::{GroupBy, Item, Policy};

/// What to forget.
pub enum Selection {
    /// Snapshots by a retention policy.
    Policy(Policy, GroupBy),
    /// These snapshots, by root score.
    Named(Vec<Score>),
}

impl Selection {
    /// The selection as the history record and the output say it.
    pub fn describe(&self) -> String {
        match self {
            Selection::Policy(p, _) => p.describe(),
            Selection::Named(roots) => format!(
                "forget {}",
                roots
                    .iter()
                    .map(|r| r.to_string()[..8].to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        }
    }
}

/// One snapshot of the chain and what becomes of it.
pub struct Decision {
    /// Its root score.
    pub score: Score,
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Kept or removed.
    pub keep: bool,
    /// Why it is kept.
    pub reasons: Vec<String>,
}

/// What a forget would do to the chain as it stands.
pub struct Plan {
    /// The head the plan was made from, with its sequence.
    pub head: Option<(Score, u64)>,
    /// Every snapshot of the chain, newest first.
    pub decisions: Vec<Decision>,
    /// Snapshots forgotten before (by the history record at the head).
    pub forgotten_before: u64,
}

impl Plan {
    /// How many snapshots it removes.
    pub fn removed(&self) -> usize {
        self.decisions.iter().filter(|d| !d.keep).count()
    }
}

/// Works out what `selection` does to the chain from the newest head;
/// `offset` and `now` as [`Policy::apply`] takes them.
pub fn plan(
    repo: &Repo,
    selection: &Selection,
    offset: &dyn Fn(i64) -> i64,
    now: i64,
) -> anyhow::Result<Plan> {
    let head = repo.newest_head()?;
    let chain = repo.walk_chain(head.map(|(s, _)| s))?;
    let forgotten_before = chain.records.first().map_or(0, |(_, r)| r.forgotten);
    let snapshots: Vec<(Score, Snapshot)> = chain
        .snapshots
        .into_iter()
        .map(|(score, snap, _)| (score, snap))
        .collect();
    let verdicts: Vec<(bool, Vec<String>)> = match selection {
        Selection::Policy(policy, group) => {
            let items: Vec<Item> = snapshots
                .iter()
                .map(|(_, s)| Item {
                    time: s.time_ns.div_euclid(1_000_000_000),
                    host: s.host.clone(),
                    paths: s.paths.clone(),
                    tags: s.tags.clone(),
                })
                .collect();
            policy
                .apply(&items, *group, offset, now)
                .into_iter()
                .map(|v| (v.keep, v.reasons))
                .collect()
        }
        Selection::Named(roots) => {
            let in_chain: HashSet<Score> = snapshots.iter().map(|(s, _)| *s).collect();
            if let Some(stray) = roots.iter().find(|r| !in_chain.contains(r)) {
                bail!("snapshot {stray} is not in this chain (already forgotten, or another machine's)");
            }
            snapshots
                .iter()
                .map(|(s, _)| {
                    if roots.contains(s) {
                        (false, Vec::new())
                    } else {
                        (true, vec!["not named".to_string()])
                    }
                })
                .collect()
        }
    };
    let decisions = snapshots
        .into_iter()
        .zip(verdicts)
        .map(|((score, snapshot), (keep, reasons))| Decision {
            score,
            snapshot,
            keep,
            reasons,
        })
        .collect();
    Ok(Plan {
        head,
        decisions,
        forgotten_before,
    })
}

/// Applies `selection`: writes the history record and makes it the head.
/// Worked out again if another machine moves the head meanwhile (its new
/// snapshot is then judged too). Returns the plan carried out and the
/// record's score (`None` when nothing was removed, and nothing written).
pub fn run(
    repo: &Repo,
    selection: &Selection,
    offset: &dyn Fn(i64) -> i64,
    now: i64,
) -> anyhow::Result<(Plan, Option<Score>)> {
    for _attempt in 0..5 {
        let plan = plan(repo, selection, offset, now)?;
        let Some(head) = plan.head else {
            return Ok((plan, None));
        };
        if plan.removed() == 0 {
            return Ok((plan, None));
        }
        let record = History {
            kept: plan
                .decisions
                .iter()
                .filter(|d| d.keep)
                .map(|d| d.score)
                .collect(),
            time_ns: crate::fsmeta::now_ns(),
            replaces: Some(head.0),
            forgotten: plan.forgotten_before + plan.removed() as u64,
            policy: selection.describe(),
        };
        if let Some(score) = repo.commit_history(&record, head)? {
            return Ok((plan, Some(score)));
        }
        eprintln!("eventi: the head moved while forgetting: working it out again");
    }
    bail!("the head kept moving: another machine is backing up with this key and head name right now; try again")
}
