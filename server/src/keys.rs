//! Write keys: the public halves of the Ed25519 keys allowed to write,
//! each with a quota and an optional rate, kept in the store's metadata
//! (the server never holds anything that lets someone write as a key).
//!
//! The registry is also the store's [`QuotaPolicy`]: the commit checks
//! every new block against its writer's quota there, under the commit
//! lock, so a quota is never overshot.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use eventi_shared::public_key;
use serde::{Deserialize, Serialize};

use eventi_store::{QuotaPolicy, Store, StoreError, Table, Usage, WriteLimit, ANONYMOUS};

const MAX_KEY_ID: u32 = (1 << 24) - 1;

/// The message for a refused anonymous write (the protocol's wording).
pub const ANONYMOUS_WRITE_REFUSED: &str = "write needs an authorized key";

/// One authorized key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    /// Number recorded with every block it stores (1..2^24).
    pub id: u32,
    /// The operator's name for it.
    pub name: String,
    /// Ed25519 public key, hex.
    pub public: String,
    /// Most bytes of new blocks it may store.
    pub quota: u64,
    /// Most bytes per second it may send, if limited.
    pub rate: Option<u64>,
    /// Unix seconds when it was added.
    pub added: u64,
}

impl KeyEntry {
    /// A short fingerprint for listings and logs (never the key itself).
    pub fn fingerprint(&self) -> String {
        public_key::fingerprint_of_hex(&self.public)
    }
}

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Not `eventi-ed25519 <hex>`.
    #[error("{}", public_key::NotAPublicKey)]
    BadPublicKey,
    /// Names are 1-64 of [A-Za-z0-9._@-].
    #[error("bad key name {0:?}: use 1-64 letters, digits, '.', '_', '@' or '-'")]
    BadName(String),
    /// The name is taken.
    #[error("a key named {0:?} exists already")]
    NameTaken(String),
    /// The public key is registered under another name.
    #[error("that public key is already registered as {0:?}")]
    KeyTaken(String),
    /// No such name.
    #[error("no key named {0:?}")]
    NoSuchKey(String),
    /// 2^24 - 1 keys exist.
    #[error("no key numbers left")]
    Full,
    /// Other servers on the same bucket kept taking the next number.
    #[error("other servers kept adding keys meanwhile; try again")]
    Busy,
}

/// Parses a public key line ([`eventi_shared::public_key::parse`]).
pub fn parse_public_key(text: &str) -> Result<[u8; 32], KeyError> {
    public_key::parse(text).map_err(|_| KeyError::BadPublicKey)
}

/// Every key kept in `store`.
fn read_tables(store: &Store) -> Result<Tables, KeyError> {
    let mut tables = Tables::default();
    for (_, v) in store.scan_records(Table::WriteKeys)? {
        if let Ok(e) = serde_json::from_slice::<KeyEntry>(&v) {
            if let Ok(pk) = parse_public_key(&e.public) {
                tables.by_public.insert(pk, e.id);
                tables.by_id.insert(e.id, e);
            }
        }
    }
    Ok(tables)
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Default)]
struct Tables {
    by_id: HashMap<u32, KeyEntry>,
    by_public: HashMap<[u8; 32], u32>,
}

/// The registry of write keys; see the module documentation.
pub struct KeyRegistry {
    store: Store,
    tables: RwLock<Tables>,
    anonymous_quota: Option<u64>,
    buckets: Mutex<HashMap<u32, Bucket>>,
}

impl KeyRegistry {
    /// Loads the keys kept in `store`. Anonymous writers may store
    /// `anonymous_quota` bytes (`None`: none at all).
    pub fn load(store: Store, anonymous_quota: Option<u64>) -> Result<KeyRegistry, KeyError> {
        let tables = read_tables(&store)?;
        Ok(KeyRegistry {
            store,
            tables: RwLock::new(tables),
            anonymous_quota,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Reads the keys again: on a bucket several servers share, another
    /// may have added, changed or removed one.
    pub fn reload(&self) -> Result<(), KeyError> {
        let tables = read_tables(&self.store)?;
        *self.tables.write().expect("keys lock") = tables;
        Ok(())
    }

    fn save(&self, e: &KeyEntry) -> Result<(), KeyError> {
        let json = serde_json::to_vec(e).expect("a key entry serializes");
        self.store
            .put_record(Table::WriteKeys, &e.id.to_be_bytes(), Some(&json))?;
        Ok(())
    }

    /// Authorizes a new key.
    pub fn add(
        &self,
        name: &str,
        public: &[u8; 32],
        quota: u64,
        rate: Option<u64>,
    ) -> Result<KeyEntry, KeyError> {
        let ok_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
        if !ok_name {
            return Err(KeyError::BadName(name.to_string()));
        }
        let mut t = self.tables.write().expect("keys lock");
        if self.store.shares_records() {
            *t = read_tables(&self.store)?;
        }
        // A number is claimed by creating its record, which fails if
        // another server sharing the bucket claimed it first: then look
        // again.
        for _ in 0..16 {
            if t.by_id.values().any(|e| e.name == name) {
                return Err(KeyError::NameTaken(name.to_string()));
            }
            if let Some(id) = t.by_public.get(public) {
                return Err(KeyError::KeyTaken(t.by_id[id].name.clone()));
            }
            // Numbers are never reused, so a removed key's blocks stay its own.
            let used = self
                .store
                .all_usage()
                .iter()
                .map(|(w, _)| *w)
                .max()
                .unwrap_or(0);
            let id = t.by_id.keys().copied().max().unwrap_or(0).max(used) + 1;
            if id > MAX_KEY_ID {
                return Err(KeyError::Full);
            }
            let e = KeyEntry {
                id,
                name: name.to_string(),
                public: hex::encode(public),
                quota,
                rate,
                added: eventi_store::usage::unix_now(),
            };
            let json = serde_json::to_vec(&e).expect("a key entry serializes");
            if self
                .store
                .swap_record(Table::WriteKeys, &id.to_be_bytes(), None, &json)?
            {
                t.by_public.insert(*public, id);
                t.by_id.insert(id, e.clone());
                return Ok(e);
            }
            *t = read_tables(&self.store)?;
        }
        Err(KeyError::Busy)
    }

    fn named(&self, t: &Tables, name: &str) -> Result<KeyEntry, KeyError> {
        t.by_id
            .values()
            .find(|e| e.name == name)
            .cloned()
            .ok_or_else(|| KeyError::NoSuchKey(name.to_string()))
    }

    /// Changes a key's quota (lowering it below its usage stops its writes).
    pub fn set_quota(&self, name: &str, quota: u64) -> Result<KeyEntry, KeyError> {
        let mut t = self.tables.write().expect("keys lock");
        let mut e = self.named(&t, name)?;
        e.quota = quota;
        self.save(&e)?;
        t.by_id.insert(e.id, e.clone());
        Ok(e)
    }

    /// Withdraws a key: its sessions can no longer write; its blocks stay.
    pub fn remove(&self, name: &str) -> Result<KeyEntry, KeyError> {
        let mut t = self.tables.write().expect("keys lock");
        let e = self.named(&t, name)?;
        self.store
            .put_record(Table::WriteKeys, &e.id.to_be_bytes(), None)?;
        t.by_id.remove(&e.id);
        t.by_public.retain(|_, id| *id != e.id);
        Ok(e)
    }

    /// Every key with its usage, by name.
    pub fn list(&self) -> Vec<(KeyEntry, Usage)> {
        let t = self.tables.read().expect("keys lock");
        let mut v: Vec<_> = t
            .by_id
            .values()
            .map(|e| (e.clone(), self.store.usage(e.id)))
            .collect();
        v.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        v
    }

    /// What the key numbered `id` has stored.
    pub fn usage(&self, id: u32) -> Usage {
        self.store.usage(id)
    }

    /// Bytes key `id`'s prunes stopped charging it for.
    pub fn reclaimed(&self, id: u32) -> u64 {
        self.store.prune_state(id).map_or(0, |s| s.reclaimed_bytes)
    }

    /// The key registered with this public key, if any.
    pub fn by_public(&self, public: &[u8; 32]) -> Option<KeyEntry> {
        let t = self.tables.read().expect("keys lock");
        t.by_public
            .get(public)
            .and_then(|id| t.by_id.get(id))
            .cloned()
    }

    /// A key's name, for metrics and logs.
    pub fn name_of(&self, writer: u32) -> Option<String> {
        self.tables
            .read()
            .expect("keys lock")
            .by_id
            .get(&writer)
            .map(|e| e.name.clone())
    }

    /// Takes `bytes` from `writer`'s rate bucket and returns how long the
    /// sender should wait first (zero if within its rate or unlimited).
    /// The bucket holds one second of rate, so short bursts pass.
    pub fn throttle(&self, writer: u32, bytes: u64) -> Duration {
        let Some(rate) = self
            .tables
            .read()
            .expect("keys lock")
            .by_id
            .get(&writer)
            .and_then(|e| e.rate)
        else {
            return Duration::ZERO;
        };
        let rate = rate.max(1) as f64;
        let mut buckets = self.buckets.lock().expect("buckets lock");
        let now = Instant::now();
        let b = buckets.entry(writer).or_insert(Bucket {
            tokens: rate,
            updated: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.updated).as_secs_f64() * rate).min(rate);
        b.updated = now;
        b.tokens -= bytes as f64;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / rate)
        }
    }
}

impl QuotaPolicy for KeyRegistry {
    fn limit(&self, writer: u32) -> WriteLimit {
        if writer == ANONYMOUS {
            return match self.anonymous_quota {
                Some(q) => WriteLimit::Bytes(q),
                None => WriteLimit::Refused(ANONYMOUS_WRITE_REFUSED),
            };
        }
        match self.tables.read().expect("keys lock").by_id.get(&writer) {
            Some(e) => WriteLimit::Bytes(e.quota),
            None => WriteLimit::Refused("write key no longer authorized"),
        }
    }
}
