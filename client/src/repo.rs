//! An opened eventi home: its keys and its destination, and the snapshot
//! chain kept there (loading, sealing and resolving roots), with the
//! chains of the write-only machines the owner exported keys to.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use eventi_shared::{BlockType, Score};

use crate::format::history::{self, History};
use crate::format::snapshot::Snapshot;
use crate::home::config::Config;
use crate::home::Home;
use crate::keys::{keyfile, passphrase, Key, WriteOnlyError};
pub use crate::store::destination::Access;
use crate::store::destination::Destination;
use crate::store::heads::SetOutcome;
use crate::store::{self, BlockStore};

/// A snapshot of a chain: its root score, the snapshot, and the write
/// key that signed it.
pub type Signed = (Score, Snapshot, ed25519_dalek::VerifyingKey);

/// A block a head or a parent link names: a snapshot root, or a history
/// record that `forget` left.
pub enum HeadBlock {
    /// A snapshot root, with the key that signed it.
    Snapshot(Box<Snapshot>, ed25519_dalek::VerifyingKey),
    /// A history record (signed by this key file's own write key).
    History(History),
}

/// A chain as walked from its head.
#[derive(Default)]
pub struct Chain {
    /// Its snapshots, newest first.
    pub snapshots: Vec<Signed>,
    /// The history records met on the way (at most one: the walk stops
    /// following links there), by score.
    pub records: Vec<(Score, History)>,
}

/// What setting the head came to.
enum HeadMove {
    /// The head is now this block.
    Set(Score),
    /// Another machine set a newer head meanwhile: the block must be made
    /// again on top of it.
    Moved(Score, u64),
}

/// A prune committed on `server` while a backup ran, and reclaimed blocks
/// its snapshot needs (its caches said the server had them): the backup
/// must run again, sending them.
#[derive(Debug, thiserror::Error)]
#[error("a prune on {server} during this backup reclaimed blocks it relied on: {what}")]
pub struct PrunedDuringBackup {
    /// The server's label.
    pub server: String,
    /// What is gone.
    pub what: String,
}

/// For the tests of prune's safety: with `EVENTI_TEST_HOLD_HEAD` naming
/// a file, a backup about to set its head creates `<file>.waiting` and
/// waits (at most a minute) while the file exists, so that a test can
/// commit a prune exactly then. Does nothing otherwise.
fn hold_for_test() {
    let Some(path) = std::env::var_os("EVENTI_TEST_HOLD_HEAD") else {
        return;
    };
    let path = std::path::PathBuf::from(path);
    let mut waiting = path.clone().into_os_string();
    waiting.push(".waiting");
    let _ = std::fs::write(&waiting, b"");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while path.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Refuses, before any passphrase is asked, a write-only key file for a
/// command that must `doing` (what the message says it cannot do).
pub fn refuse_write_only(key_path: &Path, doing: &str) -> anyhow::Result<()> {
    let name = key_path.display().to_string();
    if keyfile::is_write_only(&keyfile::read(key_path)?, &name)? {
        return Err(WriteOnlyError(doing.to_string()).into());
    }
    Ok(())
}

/// See the module documentation.
pub struct Repo {
    /// eventi's directories.
    pub home: Home,
    /// The config the destination was opened from.
    pub config: Config,
    /// The key file's keys (full, or write-only).
    pub key: Key,
    /// Where blocks go.
    pub destination: Destination,
    /// The newest head (local or on the servers), found once.
    newest: std::sync::Mutex<Option<Option<(Score, u64)>>>,
}

impl Repo {
    /// Opens the home: asks for the passphrase, opens the key file and
    /// connects to the store.
    pub fn open(passphrase_file: Option<&Path>, access: Access) -> anyhow::Result<Repo> {
        let key_path = Home::locate()?.key_file();
        if !key_path.exists() {
            bail!(
                "no key file at {}: run `eventi init` (or set EVENTI_HOME)",
                key_path.display()
            );
        }
        if access != Access::Write {
            refuse_write_only(&key_path, "read, list or restore snapshots")?;
        }
        let pass = passphrase::get(passphrase_file, "EVENTI_PASSPHRASE", "Passphrase", false)?;
        Repo::open_with(&pass, access)
    }

    /// Opens the home with a passphrase already in hand.
    pub fn open_with(pass: &str, access: Access) -> anyhow::Result<Repo> {
        let home = Home::locate()?;
        let key_path = home.key_file();
        let name = key_path.display().to_string();
        let text = keyfile::read(&key_path)?;
        let key = Key::from_secrets(&keyfile::open(&text, pass.as_bytes(), &name)?);
        let config = Config::load(&home.config_file())?;
        let destination = Destination::open(&home, &config, key.write().signing_key(), access)?;
        Ok(Repo {
            home,
            config,
            key,
            destination,
            newest: std::sync::Mutex::new(None),
        })
    }

    /// Each configured server's name, by address.
    pub fn server_names(&self) -> std::collections::HashMap<String, String> {
        self.config
            .servers
            .iter()
            .map(|s| (s.address().to_string(), s.name().to_string()))
            .collect()
    }

    /// The store blocks go to and come from.
    pub fn store(&self) -> &Arc<dyn BlockStore> {
        self.destination.store()
    }

    /// The cache directory for this destination.
    pub fn cache_dir(&self) -> anyhow::Result<PathBuf> {
        self.destination.cache_dir(&self.home)
    }

    /// The newest snapshot's root score, if any: this machine's head or
    /// the newest valid head on the circle's servers, whichever has the
    /// higher sequence (another machine with this key may have backed up,
    /// or this home was just recovered).
    pub fn head(&self) -> anyhow::Result<Option<Score>> {
        Ok(self.newest_head()?.map(|(s, _)| s))
    }

    /// [`Repo::head`] with its sequence number.
    pub fn newest_head(&self) -> anyhow::Result<Option<(Score, u64)>> {
        let mut cached = self.newest.lock().expect("newest head");
        if let Some(known) = *cached {
            return Ok(known);
        }
        let local = self.destination.local_head(&self.home)?;
        let mut newest = local;
        if let Some(heads) = self.destination.heads() {
            let found = heads.fetch();
            for w in &found.warnings {
                eprintln!("eventi: {w}");
            }
            if let Some((h, holders)) = found.newest {
                let newer = match local {
                    Some((_, seq)) => h.seq > seq,
                    None => true,
                };
                if newer {
                    if local.is_some() {
                        eprintln!(
                            "eventi: the head on {} (sequence {}) is newer than this machine's: another machine with this key backed up",
                            holders.join(", "),
                            h.seq
                        );
                    }
                    newest = Some((h.root, h.seq));
                }
            }
        }
        *cached = Some(newest);
        Ok(newest)
    }

    /// Reads and opens a snapshot root.
    pub fn load_snapshot(&self, score: Score) -> anyhow::Result<Snapshot> {
        Ok(self.load_signed(score)?.0)
    }

    /// Reads and opens a snapshot root; also returns the public write key
    /// that signed it (its signature is verified).
    pub fn load_signed(
        &self,
        score: Score,
    ) -> anyhow::Result<(Snapshot, ed25519_dalek::VerifyingKey)> {
        let block = self
            .store()
            .get(score, BlockType::DATA)
            .with_context(|| format!("reading snapshot {score}"))?;
        let secret = self.key.full("open snapshots")?.snapshot_secret();
        Ok(Snapshot::open(score, &block, secret)?)
    }

    /// Whether `signer` is this key file's own write key.
    pub fn is_own_key(&self, signer: &ed25519_dalek::VerifyingKey) -> bool {
        signer == self.key.write_public()
    }

    /// Seals, stores and syncs a new snapshot root; makes it the head,
    /// here and on every server that keeps heads. Needs only the power to
    /// write: the root is sealed to the owner's public key and signed
    /// with the write key. If another machine set the head meanwhile (a
    /// server refuses ours as stale), the snapshot is sealed again on top
    /// of that head, so neither is lost.
    pub fn commit_snapshot(&self, snapshot: &Snapshot) -> anyhow::Result<Score> {
        let write = self.key.write();
        let mut snapshot = snapshot.clone();
        let mut parent_seq = self.newest_head()?.map(|(_, seq)| seq).unwrap_or(0);
        for _attempt in 0..5 {
            let block = snapshot.seal(&write.owner().snapshot, write.signing_key());
            match self.advance_head(block, parent_seq)? {
                HeadMove::Set(score) => return Ok(score),
                HeadMove::Moved(root, seq) => {
                    eprintln!("eventi: this snapshot now follows {root}");
                    snapshot.parent = Some(root);
                    parent_seq = seq;
                }
            }
        }
        bail!("the head kept moving: another machine is backing up with this key and head name right now; try again")
    }

    /// Seals, stores and syncs a history record; makes it the head, as
    /// [`Repo::commit_snapshot`] does a root, if the head is still
    /// `expected` (score and sequence). `Ok(None)`: another machine moved
    /// the head meanwhile (the newest head is now known to this repo), and
    /// the record must be worked out again.
    pub fn commit_history(
        &self,
        record: &History,
        expected: (Score, u64),
    ) -> anyhow::Result<Option<Score>> {
        self.key.full("forget snapshots")?;
        let write = self.key.write();
        if self.newest_head()? != Some(expected) {
            return Ok(None);
        }
        let block = record.seal(&write.owner().snapshot, write.signing_key())?;
        match self.advance_head(block, expected.1)? {
            HeadMove::Set(score) => Ok(Some(score)),
            HeadMove::Moved(..) => Ok(None),
        }
    }

    /// Stores and syncs `block`, then makes it the head with sequence
    /// `parent_seq + 1`, here and on every server that keeps heads.
    fn advance_head(&self, block: Vec<u8>, parent_seq: u64) -> anyhow::Result<HeadMove> {
        let score = store::put_wait(self.store().as_ref(), BlockType::DATA, block.clone().into())?;
        self.store().sync()?;
        let seq = parent_seq + 1;
        hold_for_test();
        let Some(heads) = self.destination.heads() else {
            self.destination.set_local_head(&self.home, &score, seq)?;
            *self.newest.lock().expect("newest head") = Some(Some((score, seq)));
            return Ok(HeadMove::Set(score));
        };
        let write = self.key.write();
        let mut outcomes = heads.set(write.signing_key(), score, seq, &self.up_labels());
        for (label, outcome) in outcomes.iter_mut() {
            if matches!(outcome, SetOutcome::Pruned(_)) {
                self.mark_again(label, score, &block)?;
                let again = heads.set(write.signing_key(), score, seq, std::slice::from_ref(label));
                *outcome = again
                    .into_iter()
                    .next()
                    .map_or(SetOutcome::Unsupported, |(_, o)| o);
            }
        }
        let mut stale = false;
        let mut kept = 0;
        for (label, outcome) in &outcomes {
            match outcome {
                SetOutcome::Set => kept += 1,
                SetOutcome::Unsupported => {}
                SetOutcome::Stale(_) => stale = true,
                SetOutcome::Pruned(e) => {
                    eprintln!("eventi: could not set the head on {label}: {e}")
                }
                SetOutcome::Failed(e) => {
                    eprintln!("eventi: could not set the head on {label}: {e}")
                }
            }
        }
        if stale {
            let found = heads.fetch();
            // Another machine's head, not ours on a server that took it.
            let theirs = found
                .newest
                .filter(|(h, _)| h.seq >= seq && h.root != score);
            if let Some((h, holders)) = theirs {
                eprintln!(
                    "eventi: {} took a newer head (sequence {}) meanwhile",
                    holders.join(", "),
                    h.seq,
                );
                *self.newest.lock().expect("newest head") = Some(Some((h.root, h.seq)));
                return Ok(HeadMove::Moved(h.root, h.seq));
            }
        }
        if kept == 0
            && outcomes
                .iter()
                .all(|(_, o)| matches!(o, SetOutcome::Unsupported))
        {
            eprintln!(
                "eventi: no server of the circle keeps heads (plain venti): without this machine, the root score {score} is the only way back to this snapshot"
            );
        }
        self.destination.set_local_head(&self.home, &score, seq)?;
        *self.newest.lock().expect("newest head") = Some(Some((score, seq)));
        Ok(HeadMove::Set(score))
    }

    /// After a server refused a head because a prune of the key committed
    /// during the backup: stores the snapshot's root `block` there again,
    /// marks every block of the snapshot (so that no later prune lets go
    /// of them) and adopts the server's new epoch. Fails with
    /// [`PrunedDuringBackup`] if the prune reclaimed blocks the snapshot
    /// needs: the caller backs up again (its caches then dropped for that
    /// server), which sends them.
    fn mark_again(&self, label: &str, root: Score, block: &[u8]) -> anyhow::Result<()> {
        let circle = self.destination.circle();
        let Some(store) = circle
            .members()
            .iter()
            .position(|m| m.label() == label)
            .and_then(|i| circle.store_of(i))
        else {
            bail!("{label} is not up");
        };
        let Some(prunable) = store.prunable() else {
            bail!("{label} refused the head for a prune but does not prune");
        };
        eprintln!("eventi: a prune committed on {label} during this backup: marking the snapshot's blocks there again");
        let reclaimed = |what: String| PrunedDuringBackup {
            server: label.to_string(),
            what,
        };
        store::put_wait(store.as_ref(), BlockType::DATA, block.to_vec().into())?;
        store.sync()?;
        let needed = crate::check::blocks_of(self, &[root]).map_err(|e| {
            reclaimed(format!(
                "the snapshot cannot be read whole any more ({e:#})"
            ))
        })?;
        let keys: Vec<(Score, BlockType)> =
            needed.iter().map(|n| (n.score, BlockType::DATA)).collect();
        let present = prunable.prune_mark(&keys)?;
        let missing = present.iter().filter(|p| !**p).count();
        if missing > 0 {
            return Err(
                reclaimed(format!("{missing} block(s) of the snapshot are gone there")).into(),
            );
        }
        let status = prunable
            .prune_status()?
            .context("the server stopped answering prune requests")?;
        prunable.adopt_epoch(status.epoch);
        Ok(())
    }

    /// The labels of the circle's servers that are up.
    pub fn up_labels(&self) -> Vec<String> {
        let circle = self.destination.circle();
        circle
            .members()
            .iter()
            .filter(|m| m.is_up())
            .map(|m| m.label())
            .collect()
    }

    /// The chain from the head, newest first, as (score, snapshot).
    pub fn chain(&self) -> anyhow::Result<Vec<(Score, Snapshot)>> {
        Ok(self
            .signed_chain()?
            .into_iter()
            .map(|(score, snap, _)| (score, snap))
            .collect())
    }

    /// The chain from the head, newest first, with each root's signer.
    pub fn signed_chain(&self) -> anyhow::Result<Vec<Signed>> {
        self.chain_from(self.head()?)
    }

    /// The chain from `head` back, newest first, with each root's signer.
    pub fn chain_from(&self, head: Option<Score>) -> anyhow::Result<Vec<Signed>> {
        Ok(self.walk_chain(head)?.snapshots)
    }

    /// The chain from `head` back: parent links from root to root until
    /// a history record, whose list of kept roots is the rest.
    pub fn walk_chain(&self, head: Option<Score>) -> anyhow::Result<Chain> {
        let mut out = Chain::default();
        let mut next = head;
        while let Some(score) = next {
            if out.snapshots.len() > 1_000_000 {
                bail!("the snapshot chain loops");
            }
            match self.load_head_block(score)? {
                HeadBlock::Snapshot(snap, signer) => {
                    next = snap.parent;
                    out.snapshots.push((score, *snap, signer));
                }
                HeadBlock::History(record) => {
                    for root in &record.kept {
                        let (snap, signer) = self.load_signed(*root)?;
                        out.snapshots.push((*root, snap, signer));
                    }
                    out.records.push((score, record));
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Reads and opens what a head or a parent link names. A history
    /// record must be signed by this key file's own write key: only the
    /// owner forgets.
    pub fn load_head_block(&self, score: Score) -> anyhow::Result<HeadBlock> {
        let block = self
            .store()
            .get(score, BlockType::DATA)
            .with_context(|| format!("reading snapshot {score}"))?;
        let secret = self.key.full("open snapshots")?.snapshot_secret();
        if history::KIND.is_kind(&block) {
            let (record, signer) = History::open(score, &block, secret)?;
            if !self.is_own_key(&signer) {
                bail!("history record {score} is signed by another write key than this key file's: refusing to take the chain's history from it");
            }
            return Ok(HeadBlock::History(record));
        }
        let (snap, signer) = Snapshot::open(score, &block, secret)?;
        Ok(HeadBlock::Snapshot(Box::new(snap), signer))
    }

    /// The newest snapshot: the head, or the first root the history
    /// record at the head keeps.
    pub fn latest(&self) -> anyhow::Result<Option<(Score, Snapshot)>> {
        let Some(head) = self.head()? else {
            return Ok(None);
        };
        match self.load_head_block(head)? {
            HeadBlock::Snapshot(snap, _) => Ok(Some((head, *snap))),
            HeadBlock::History(record) => match record.kept.first() {
                Some(root) => Ok(Some((*root, self.load_snapshot(*root)?))),
                None => Ok(None),
            },
        }
    }

    /// The chains of the write-only machines in the config, by name,
    /// each from the newest head its key keeps on the circle's servers
    /// (empty for a machine with none yet). A machine whose head cannot be
    /// found or read is named on stderr and left out.
    pub fn machine_chains(&self) -> anyhow::Result<Vec<(String, Vec<Signed>)>> {
        let mut out = Vec::new();
        for machine in &self.config.machines {
            let key = match eventi_shared::public_key::parse(&machine.key) {
                Ok(k) => k,
                Err(e) => {
                    eprintln!("eventi: machine {}: {e}", machine.name);
                    continue;
                }
            };
            let Some(heads) = self.destination.heads() else {
                bail!("the embedded store keeps no heads: machines back up to servers");
            };
            let name = machine
                .head
                .as_deref()
                .unwrap_or(crate::store::heads::DEFAULT_NAME);
            let found = heads.for_key(key, name).fetch();
            for w in &found.warnings {
                eprintln!("eventi: machine {}: {w}", machine.name);
            }
            let head = found.newest.map(|(h, _)| h.root);
            match self.chain_from(head) {
                Ok(chain) => out.push((machine.name.clone(), chain)),
                Err(e) => eprintln!("eventi: machine {}: {e:#}", machine.name),
            }
        }
        Ok(out)
    }

    /// Resolves `latest`, a full root score, or a unique hex prefix of
    /// one in the chain (or, failing that, in a machine's chain).
    pub fn resolve(&self, spec: &str) -> anyhow::Result<(Score, Snapshot)> {
        if spec == "latest" {
            return self
                .latest()?
                .context("no snapshots yet (run `eventi backup`)");
        }
        if let Ok(score) = spec.parse::<Score>() {
            return Ok((score, self.load_snapshot(score)?));
        }
        let lower = spec.to_ascii_lowercase();
        if lower.is_empty() || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "{spec:?} is not a snapshot: give a root score, a hex prefix of one, or `latest`"
            );
        }
        let matching = |chain: Vec<Signed>| -> Vec<(Score, Snapshot)> {
            chain
                .into_iter()
                .filter(|(s, ..)| s.to_string().starts_with(&lower))
                .map(|(s, snap, _)| (s, snap))
                .collect()
        };
        let mut found = matching(self.signed_chain()?);
        if found.is_empty() {
            for (_, chain) in self.machine_chains()? {
                found.extend(matching(chain));
            }
        }
        match found.len() {
            0 => bail!("no snapshot in the chain starts with {spec}"),
            1 => Ok(found.pop().expect("one")),
            n => bail!("{spec} is ambiguous: {n} snapshots start with it"),
        }
    }

    /// Syncs what was written and closes the destination.
    pub fn close(self) -> anyhow::Result<()> {
        self.destination.close()
    }
}
