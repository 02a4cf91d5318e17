//! The snapshot head kept on the circle's servers (eventi-server's heads
//! extension): fetched from every server at once, each verified against
//! the write key's signature, the newest (highest sequence) winning; set
//! on every server after a backup's blocks are synced there. A server
//! that serves an older head than another, or one whose signature fails,
//! is named. Plain venti servers keep no heads.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use eventi_shared::errors::KnownError;
use eventi_shared::head::{self, SignedHead};
use eventi_shared::{ClientError, Score};

use crate::store::venti::VentiStore;

/// The head name used when the config sets none.
pub const DEFAULT_NAME: &str = "default";

/// The circle's servers as keepers of heads.
pub struct Heads {
    /// (label, store) of each server that answered.
    servers: Vec<(String, Arc<VentiStore>)>,
    key: [u8; 32],
    name: String,
}

/// What fetching the heads found.
#[derive(Debug, Default)]
pub struct Found {
    /// The newest valid head, and the servers that hold it.
    pub newest: Option<(SignedHead, Vec<String>)>,
    /// Servers that keep heads (eventi-servers that answered).
    pub keepers: usize,
    /// What to tell the user: stale and forged heads, failures.
    pub warnings: Vec<String>,
}

/// How setting the head went on one server.
#[derive(Debug)]
pub enum SetOutcome {
    /// Stored.
    Set,
    /// The server keeps no heads (plain venti).
    Unsupported,
    /// The server holds this sequence or a higher one: another machine
    /// backed up meanwhile.
    Stale(String),
    /// A prune of the key committed after the backup began: the
    /// snapshot's blocks must be marked again first.
    Pruned(String),
    /// It failed.
    Failed(String),
}

impl Heads {
    /// Heads `name` of write key `key` on `servers`.
    pub fn new(servers: Vec<(String, Arc<VentiStore>)>, key: [u8; 32], name: &str) -> Heads {
        Heads {
            servers,
            key,
            name: name.to_string(),
        }
    }

    /// The same servers as keepers of another key's head `name` (a
    /// write-only machine's, which its owner reads).
    pub fn for_key(&self, key: [u8; 32], name: &str) -> Heads {
        Heads::new(self.servers.clone(), key, name)
    }

    /// The head's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Fetches the head from every server at once and picks the newest
    /// valid one.
    pub fn fetch(&self) -> Found {
        let answers: Vec<Result<Option<Option<SignedHead>>, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .servers
                .iter()
                .map(|(_, store)| s.spawn(|| store.head_get(self.key, &self.name)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("panicked".into())))
                .collect()
        });
        let mut found = Found::default();
        let mut valid: Vec<(&str, SignedHead)> = Vec::new();
        for ((label, _), answer) in self.servers.iter().zip(answers) {
            match answer {
                Ok(None) => {}
                Ok(Some(None)) => found.keepers += 1,
                Ok(Some(Some(h))) => {
                    found.keepers += 1;
                    if head::verify(&self.key, &self.name, &h) {
                        valid.push((label, h));
                    } else {
                        found.warnings.push(format!(
                            "ignoring the head {label} serves: its signature does not verify (the server or the disk is at fault)"
                        ));
                    }
                }
                Err(e) => found
                    .warnings
                    .push(format!("could not read the head from {label}: {e}")),
            }
        }
        let Some(best) = valid.iter().map(|(_, h)| *h).max_by_key(|h| h.seq) else {
            return found;
        };
        let mut holders = Vec::new();
        for (label, h) in &valid {
            if h.seq == best.seq && h.root == best.root {
                holders.push(label.to_string());
            } else if h.seq < best.seq {
                found.warnings.push(format!(
                    "{label} serves an older head (sequence {} against {}): it missed a backup or rolled back",
                    h.seq, best.seq
                ));
            } else {
                found.warnings.push(format!(
                    "{label} serves another head with the same sequence {}: two machines raced",
                    h.seq
                ));
            }
        }
        found.newest = Some((best, holders));
        found
    }

    /// Signs head → `root` at `seq` and sets it on every server whose
    /// label `up` lists (a server left behind lacks the snapshot's blocks,
    /// and a slow one would hold the command up).
    pub fn set(
        &self,
        key: &SigningKey,
        root: Score,
        seq: u64,
        up: &[String],
    ) -> Vec<(String, SetOutcome)> {
        let signed = head::sign(key, &self.name, root, seq);
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .servers
                .iter()
                .filter(|(label, _)| up.contains(label))
                .map(|(label, store)| {
                    s.spawn(move || (label.clone(), store.head_set(&self.name, signed)))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("head set thread"))
                .collect()
        })
    }
}

impl VentiStore {
    /// Head `name` of `key` here: `None` from a server without heads.
    pub fn head_get(
        &self,
        key: [u8; 32],
        name: &str,
    ) -> Result<Option<Option<SignedHead>>, String> {
        match self.block_on(self.client().head_get(key, name)) {
            Ok(h) => Ok(Some(h)),
            Err(ClientError::Unsupported) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Sets head `name` here.
    pub fn head_set(&self, name: &str, signed: SignedHead) -> SetOutcome {
        match self.block_on(self.client().head_set(name, signed, self.epoch())) {
            Ok(()) => SetOutcome::Set,
            Err(ClientError::Unsupported) => SetOutcome::Unsupported,
            Err(ClientError::Server(m))
                if KnownError::classify(&m) == Some(KnownError::StaleHead) =>
            {
                SetOutcome::Stale(m)
            }
            Err(ClientError::Server(m)) if KnownError::classify(&m) == Some(KnownError::Pruned) => {
                SetOutcome::Pruned(m)
            }
            Err(e) => SetOutcome::Failed(e.to_string()),
        }
    }
}
