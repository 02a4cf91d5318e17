//! Capabilities made and opened (`eventi share`, `put`, `get`, `log`):
//! an envelope sealed into the home's destination, and read back with
//! nothing but its line. A [`Reader`] holds anonymous venti sessions to
//! the servers a line hints (or `--server` names), opens envelopes, and
//! walks a drop chain back from its newest drop, reaching the servers
//! each earlier link hints as it goes. Reads are checked like every read
//! of a tree: by score, then by each reference's SHA-256.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use eventi_shared::client::ServerKey;
use eventi_shared::{BlockType, Score};

use crate::format::capability::{self, Capability, Envelope};
use crate::home::config::Config;
use crate::repo::Repo;
use crate::store::venti::VentiStore;
use crate::store::{self, BlockStore, PutDone, StoreError};

/// Seals `envelope` under the home's convergence secret and stores it
/// (synced) in the home's destination: its capability, without hints.
pub fn store_envelope(repo: &Repo, envelope: &Envelope) -> anyhow::Result<Capability> {
    let (block, cap) = capability::seal(repo.key.write().convergence(), envelope);
    store::put_wait(repo.store().as_ref(), BlockType::DATA, block)
        .context("storing the capability's envelope")?;
    repo.store().sync().context("syncing the envelope")?;
    // `eventi prune` keeps what this home's drops hold.
    crate::home::drops::record(&repo.home, &cap.to_line())?;
    Ok(cap)
}

/// Most drops a chain may hold before a walk gives up (a guard against a
/// chain that never ends; content addressing makes a loop impossible).
pub const MAX_CHAIN: usize = 1_000_000;

/// Reads through the servers of capabilities (anonymously; in an
/// encrypted session with each eventi-server, to its pinned identity
/// where this machine's config pins one), or through a home's own store;
/// tries each in turn for every block.
pub struct Reader {
    stores: Mutex<Vec<(String, Arc<dyn BlockStore>)>>,
    /// Addresses tried, and why those that failed did.
    tried: Mutex<Vec<(String, Option<String>)>>,
    timeout: Duration,
    /// Identities pinned in this machine's config, by address.
    pins: HashMap<String, [u8; 32]>,
}

/// The identities `config` pins, by address (what a [`Reader`] holds
/// servers to).
pub fn pins_of(config: &Config) -> HashMap<String, [u8; 32]> {
    config
        .servers
        .iter()
        .filter_map(|s| match s.session_key() {
            Ok(ServerKey::Pinned(k)) => Some((s.address().to_string(), k)),
            _ => None,
        })
        .collect()
}

impl Reader {
    /// A reader of no server yet ([`Reader::add`] connects), holding each
    /// server it reaches to its identity in `pins`.
    pub fn new(timeout: Duration, pins: HashMap<String, [u8; 32]>) -> Reader {
        Reader {
            stores: Mutex::new(Vec::new()),
            tried: Mutex::new(Vec::new()),
            timeout,
            pins,
        }
    }

    /// A reader of a store already open (the home's own), then of the
    /// servers added.
    pub fn of_store(
        store: Arc<dyn BlockStore>,
        timeout: Duration,
        pins: HashMap<String, [u8; 32]>,
    ) -> Reader {
        let name = store.name();
        Reader {
            stores: Mutex::new(vec![(name.clone(), store)]),
            tried: Mutex::new(vec![(name, None)]),
            timeout,
            pins,
        }
    }

    /// Connects to those of `servers` not tried yet (all at once).
    pub fn add(&self, servers: &[String]) {
        let new: Vec<String> = {
            let tried = self.tried.lock().expect("tried");
            let mut new: Vec<String> = Vec::new();
            for s in servers {
                if !tried.iter().any(|(a, _)| a == s) && !new.contains(s) {
                    new.push(s.clone());
                }
            }
            new
        };
        let timeout = self.timeout;
        let connected: Vec<Result<VentiStore, StoreError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = new
                .iter()
                .map(|a| {
                    let key = match self.pins.get(a) {
                        Some(k) => ServerKey::Pinned(*k),
                        None => ServerKey::Learn,
                    };
                    scope.spawn(move || VentiStore::connect(a, None, key, timeout))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("connect thread"))
                .collect()
        });
        let mut stores = self.stores.lock().expect("stores");
        let mut tried = self.tried.lock().expect("tried");
        for (address, c) in new.into_iter().zip(connected) {
            match c {
                Ok(s) => {
                    stores.push((address.clone(), Arc::new(s)));
                    tried.push((address, None));
                }
                Err(e) => tried.push((address, Some(e.reason()))),
            }
        }
    }

    /// Whether any server answered.
    pub fn is_empty(&self) -> bool {
        self.stores.lock().expect("stores").is_empty()
    }

    /// Every address tried that failed, and why.
    pub fn failures(&self) -> Vec<String> {
        self.tried
            .lock()
            .expect("tried")
            .iter()
            .filter_map(|(a, why)| why.as_ref().map(|w| format!("{a}: {w}")))
            .collect()
    }

    fn each(&self) -> Vec<(String, Arc<dyn BlockStore>)> {
        self.stores.lock().expect("stores").clone()
    }

    /// Fetches and opens the envelope `cap` names.
    pub fn envelope(&self, cap: &Capability) -> anyhow::Result<Envelope> {
        let block = self
            .get(cap.score, BlockType::DATA)
            .with_context(|| format!("fetching the capability's envelope {}", cap.score))?;
        Ok(capability::open(cap, &block)?)
    }

    /// The drops of the chain `cap` ends, newest first (a capability that
    /// follows nothing is a chain of one); each earlier link's servers
    /// are reached as the walk comes to it.
    pub fn chain(&self, cap: &Capability) -> anyhow::Result<Vec<(Capability, Envelope)>> {
        let mut out: Vec<(Capability, Envelope)> = Vec::new();
        let mut next = Some(cap.clone());
        while let Some(cap) = next {
            if out.len() >= MAX_CHAIN {
                anyhow::bail!("the chain is longer than {MAX_CHAIN} drops");
            }
            self.add(&cap.hints);
            let envelope = self
                .envelope(&cap)
                .with_context(|| format!("drop {} of the chain", out.len() + 1))?;
            next = match &envelope.follows {
                Some(line) => Some(Capability::parse(line).with_context(|| {
                    format!("the drop {} follows is not a capability", cap.score)
                })?),
                None => None,
            };
            out.push((cap, envelope));
        }
        Ok(out)
    }
}

impl BlockStore for Reader {
    fn name(&self) -> String {
        let names: Vec<String> = self.each().into_iter().map(|(a, _)| a).collect();
        names.join(", ")
    }

    fn put(&self, _block_type: BlockType, _data: Bytes, done: PutDone) {
        done(Err(StoreError::Failed {
            store: self.name(),
            message: "a capability reads; it never writes".into(),
        }))
    }

    fn get(&self, score: Score, block_type: BlockType) -> Result<Bytes, StoreError> {
        self.first(|s| s.get(score, block_type), score, block_type)
    }

    fn get_checked(
        &self,
        score: Score,
        block_type: BlockType,
        sha256: &[u8; 32],
    ) -> Result<Bytes, StoreError> {
        self.first(
            |s| s.get_checked(score, block_type, sha256),
            score,
            block_type,
        )
    }

    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Reader {
    /// The first store's answer that is a block; else every failure,
    /// one error naming each server (a block missing everywhere is one
    /// `Missing` naming them all).
    fn first(
        &self,
        read: impl Fn(&dyn BlockStore) -> Result<Bytes, StoreError>,
        score: Score,
        block_type: BlockType,
    ) -> Result<Bytes, StoreError> {
        let stores = self.each();
        let mut errors = Vec::new();
        for (_, s) in &stores {
            match read(s.as_ref()) {
                Ok(b) => return Ok(b),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            return Err(StoreError::Failed {
                store: "no server".into(),
                message: "no server answered".into(),
            });
        }
        if errors
            .iter()
            .all(|e| matches!(e, StoreError::Missing { .. }))
        {
            let names: Vec<String> = stores.iter().map(|(a, _)| a.clone()).collect();
            return Err(StoreError::Missing {
                score,
                block_type,
                store: names.join(", "),
            });
        }
        Err(store::combined(errors))
    }
}

/// The entry at `path` within `top` (the envelope's entry; `/` is `top`
/// itself). Nothing above `top` can be named: `..` is refused.
pub fn lookup(
    store: &dyn BlockStore,
    top: &crate::format::dirent::Entry,
    path: &std::path::Path,
) -> Result<crate::format::dirent::Entry, crate::walk::WalkError> {
    use crate::format::dirent::Kind;
    use std::path::Component;
    if path
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::CurDir))
    {
        return Ok(top.clone());
    }
    match (top.kind, top.content) {
        (Kind::Dir, Some(content)) => crate::walk::lookup(store, content, path),
        _ => Err(crate::walk::WalkError::NotADirectory(
            std::path::PathBuf::from("/"),
        )),
    }
}

/// The file a hard link inside an envelope's tree names, if that first
/// name is inside the envelope too (its `base`); its name stays the link's.
pub fn resolve_hardlink(
    store: &dyn BlockStore,
    envelope: &Envelope,
    link: &crate::format::dirent::Entry,
) -> anyhow::Result<crate::format::dirent::Entry> {
    use std::os::unix::ffi::OsStrExt;
    let target = std::path::Path::new(std::ffi::OsStr::from_bytes(&link.target));
    let base = std::path::Path::new(std::ffi::OsStr::from_bytes(&envelope.base));
    let inside = match target.strip_prefix(base) {
        Ok(rest) if !envelope.base.is_empty() => rest,
        _ => anyhow::bail!(
            "a hard link to {}, which is outside what was shared",
            target.display()
        ),
    };
    let mut first = lookup(
        store,
        &envelope.entry,
        &std::path::Path::new("/").join(inside),
    )?;
    first.name = link.name.clone();
    Ok(first)
}
