//! Operator commands on write keys, shared by the `keys` CLI (stopped
//! server: it opens the data directory itself) and the admin socket
//! (running server: the CLI sends the command there, see [`socket`]), so
//! both do exactly the same thing.

pub mod socket;

use serde::{Deserialize, Serialize};

use crate::keys::{parse_public_key, KeyEntry, KeyError, KeyRegistry};
use eventi_store::Usage;

/// A key with its usage, as `keys list` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyReport {
    /// The key.
    pub key: KeyEntry,
    /// Fingerprint of the public key.
    pub fingerprint: String,
    /// Bytes charged.
    pub used_bytes: u64,
    /// Blocks charged.
    pub used_blocks: u64,
    /// Unix seconds of the last new block (0 if none).
    pub last_write: u64,
    /// Bytes its prunes stopped charging it for, over its life.
    #[serde(default)]
    pub reclaimed_bytes: u64,
}

impl KeyReport {
    fn new(key: KeyEntry, usage: Usage, reclaimed_bytes: u64) -> KeyReport {
        KeyReport {
            fingerprint: key.fingerprint(),
            key,
            used_bytes: usage.bytes,
            used_blocks: usage.blocks,
            last_write: usage.last_write,
            reclaimed_bytes,
        }
    }
}

/// A request from the CLI.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum KeyCommand {
    /// Authorize a key.
    Add {
        /// Name.
        name: String,
        /// `eventi-ed25519 <hex>` line.
        public: String,
        /// Quota in bytes.
        quota: u64,
        /// Bytes per second, if limited.
        rate: Option<u64>,
    },
    /// List keys.
    List,
    /// Change a quota.
    SetQuota {
        /// Name.
        name: String,
        /// New quota in bytes.
        quota: u64,
    },
    /// Withdraw a key.
    Remove {
        /// Name.
        name: String,
    },
}

impl KeyCommand {
    /// The command's name, for logs (never its arguments).
    pub fn verb(&self) -> &'static str {
        match self {
            KeyCommand::Add { .. } => "add",
            KeyCommand::List => "list",
            KeyCommand::SetQuota { .. } => "set-quota",
            KeyCommand::Remove { .. } => "remove",
        }
    }
}

/// Runs a command against a registry.
pub fn apply(keys: &KeyRegistry, cmd: &KeyCommand) -> Result<Vec<KeyReport>, KeyError> {
    let one = |e: KeyEntry| {
        let usage = keys.usage(e.id);
        let reclaimed = keys.reclaimed(e.id);
        vec![KeyReport::new(e, usage, reclaimed)]
    };
    Ok(match cmd {
        KeyCommand::Add {
            name,
            public,
            quota,
            rate,
        } => one(keys.add(name, &parse_public_key(public)?, *quota, *rate)?),
        KeyCommand::List => keys
            .list()
            .into_iter()
            .map(|(k, u)| {
                let reclaimed = keys.reclaimed(k.id);
                KeyReport::new(k, u, reclaimed)
            })
            .collect(),
        KeyCommand::SetQuota { name, quota } => one(keys.set_quota(name, *quota)?),
        KeyCommand::Remove { name } => {
            let e = keys.remove(name)?;
            vec![KeyReport::new(e, Usage::default(), 0)]
        }
    })
}
