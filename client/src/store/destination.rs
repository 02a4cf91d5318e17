//! Where a home's blocks go, and what the client keeps about it: the
//! circle (the embedded store, or the configured servers with a number of
//! copies), the name that keys its cache directory, its head and its
//! shortfall book, the head itself (the newest snapshot root there), and
//! closing it.
//!
//! The circle's name is `circle` whatever servers it holds, so adding or
//! removing one keeps the chain, the caches and the stat cache. (Homes
//! from before the circle used `servers-<hash of the server list>`; the
//! first open renames those.)

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use ed25519_dalek::SigningKey;
use eventi_shared::client::ServerKey;
use eventi_shared::Score;
use sha2::{Digest, Sha256};

use crate::home::config::{Config, ServerSpec};
use crate::home::shortfalls::Shortfalls;
use crate::home::{self, Home};
use crate::store::circle::{Circle, Joined};
use crate::store::heads::Heads;
use crate::store::local::LocalStore;
use crate::store::venti::VentiStore;
use crate::store::BlockStore;

/// What a command will do with the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Write a backup: at least `copies` servers must take every block;
    /// the others are named and their shortfall recorded.
    Write,
    /// Read: any server that answers will do (the others are named on
    /// stderr). A server that refuses the write key is read anonymously.
    Read,
    /// Browse (a mount, a 9P server): as `Read`, from a process that may
    /// stay up for hours, so the embedded store is opened shared and
    /// read-only (backups go on beside it).
    Browse,
    /// Check and repair: every server that answers, with the write key
    /// (a repair writes), whatever `copies` says.
    Repair,
}

/// The destination name of every home with servers.
const CIRCLE: &str = "circle";

/// See the module documentation.
pub struct Destination {
    circle: Arc<Circle>,
    /// The circle as a store.
    store: Arc<dyn BlockStore>,
    /// Set for the embedded store, which must be closed.
    local: Option<Arc<LocalStore>>,
    /// `local` or `circle`.
    name: String,
    access: Access,
    /// The head on the servers (none for the embedded store).
    heads: Option<Heads>,
}

/// Connects to one server: the store and its measured round trip, or
/// why not.
pub fn connect(
    spec: &ServerSpec,
    write_key: Option<&SigningKey>,
    timeout: Duration,
) -> Result<(Arc<VentiStore>, Duration), String> {
    let server_key = spec.session_key().map_err(|e| e.to_string())?;
    let store = VentiStore::connect(spec.address(), write_key.cloned(), server_key, timeout)
        .map_err(|e| e.reason())?;
    let latency = store.ping().map_err(|e| e.reason())?;
    Ok((Arc::new(store), latency))
}

/// Connects to every server at once (a silent one costs one timeout, not
/// one each).
pub fn connect_all(
    servers: &[ServerSpec],
    write_key: Option<&SigningKey>,
    timeout: Duration,
) -> Vec<Result<(Arc<VentiStore>, Duration), String>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = servers
            .iter()
            .map(|spec| scope.spawn(move || connect(spec, write_key, timeout)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("connect panicked".into())))
            .collect()
    })
}

/// Pins the identity each unpinned server proved (one entered before
/// pinning existed, or while it did not answer), so that from now on a
/// different one is refused: trust on first use, not on every use.
fn pin_first_use(
    home: &Home,
    config: &Config,
    connected: &[Result<(Arc<VentiStore>, Duration), String>],
) {
    for (spec, c) in config.servers.iter().zip(connected) {
        let (Ok(ServerKey::Learn), Ok((store, _))) = (spec.session_key(), c) else {
            continue;
        };
        let Some(key) = store.server_key() else {
            continue;
        };
        let line = eventi_shared::identity::format(&key, "");
        let fingerprint = eventi_shared::identity::fingerprint(&key);
        match home::config::pin_server(&home.config_file(), spec.address(), &line) {
            Ok(()) => eprintln!(
                "eventi: {}: pinned the identity it proved, {fingerprint} (first use); from now on another is refused. Check it with the server's operator (`eventi-server identity`)",
                spec.name()
            ),
            Err(e) => eprintln!("eventi: {}: could not pin its identity: {e}", spec.name()),
        }
    }
}

impl Destination {
    /// Connects to what `config` names (the embedded store when it names no
    /// server), authenticating writers with `write_key`.
    pub fn open(
        home: &Home,
        config: &Config,
        write_key: &SigningKey,
        access: Access,
    ) -> anyhow::Result<Destination> {
        if config.servers.is_empty() {
            home::create_private_dir(&home.data)?;
            let local = Arc::new(if access == Access::Browse {
                LocalStore::open_shared(&home.store_dir())?
            } else {
                LocalStore::open_with_grace(&home.store_dir(), config.prune_grace()?)?
            });
            let circle = Arc::new(Circle::single(local.clone()));
            return Ok(Destination {
                store: circle.clone(),
                circle,
                local: Some(local),
                name: name_for(config).to_string(),
                access,
                heads: None,
            });
        }
        migrate_legacy(home, config)?;
        let timeout = config.timeout()?;
        let copies = config.copies()?;
        let mut connected = connect_all(&config.servers, Some(write_key), timeout);
        if matches!(access, Access::Read | Access::Browse) {
            // Reading needs no write key where anonymous reads are allowed:
            // a server that does not know the key still serves the blocks.
            for (spec, c) in config.servers.iter().zip(connected.iter_mut()) {
                if matches!(c, Err(e) if e.contains("authentication failed")) {
                    *c = connect(spec, None, timeout);
                }
            }
        }
        pin_first_use(home, config, &connected);
        let keepers: Vec<(String, Arc<VentiStore>)> = config
            .servers
            .iter()
            .zip(&connected)
            .filter_map(|(spec, c)| {
                let (store, _) = c.as_ref().ok()?;
                let label = crate::store::circle::label(spec.name(), spec.address());
                Some((label, Arc::clone(store)))
            })
            .collect();
        let heads = Heads::new(
            keepers,
            write_key.verifying_key().to_bytes(),
            config.head_name(),
        );
        let joined: Vec<Joined> = config
            .servers
            .iter()
            .zip(connected)
            .map(|(spec, c)| Joined {
                name: spec.name().to_string(),
                address: spec.address().to_string(),
                store: c.map(|(s, latency)| (s as Arc<dyn BlockStore>, Some(latency))),
            })
            .collect();
        let circle = Arc::new(
            Circle::new(joined, copies, Box::new(|m| eprintln!("eventi: {m}")))
                .with_lag(config.lag()?),
        );
        // Too few to go on: one error naming every server and why.
        if access == Access::Write {
            circle.check_copies()?;
        }
        if circle.up_count() == 0 {
            let down: Vec<String> = circle
                .members()
                .iter()
                .map(|m| format!("{}: {}", m.label(), m.why_down().unwrap_or_default()))
                .collect();
            bail!("no configured server answers: {}", down.join("; "));
        }
        for m in circle.members().iter().filter(|m| !m.is_up()) {
            let why = m.why_down().unwrap_or_default();
            match access {
                Access::Read | Access::Browse | Access::Repair => {
                    eprintln!("eventi: skipping {}: {why}", m.label())
                }
                Access::Write => eprintln!(
                    "eventi: {} is down ({why}); what it misses is recorded for `eventi repair`",
                    m.label()
                ),
            }
        }
        Ok(Destination {
            store: circle.clone(),
            circle,
            local: None,
            name: name_for(config).to_string(),
            access,
            heads: Some(heads),
        })
    }

    /// The head kept on the servers (none for the embedded store).
    pub fn heads(&self) -> Option<&Heads> {
        self.heads.as_ref()
    }

    /// The circle blocks go to and come from.
    pub fn circle(&self) -> &Arc<Circle> {
        &self.circle
    }

    /// The shortfall book of this destination.
    pub fn shortfalls(&self, home: &Home) -> anyhow::Result<Shortfalls> {
        Shortfalls::load(&shortfalls_path(home, &self.name))
    }

    /// Records every member that is down as lacking snapshot `root`.
    pub fn record_shortfalls(&self, home: &Home, root: &Score) -> anyhow::Result<Vec<String>> {
        let down: Vec<_> = self
            .circle
            .members()
            .iter()
            .filter(|m| !m.is_up())
            .collect();
        if down.is_empty() {
            return Ok(Vec::new());
        }
        let mut book = self.shortfalls(home)?;
        for m in &down {
            book.record(root, &m.address, &m.why_down().unwrap_or_default());
        }
        book.save()?;
        Ok(down.iter().map(|m| m.label()).collect())
    }

    /// The circle as a store: what blocks go to and come from.
    pub fn store(&self) -> &Arc<dyn BlockStore> {
        &self.store
    }

    /// The name that keys this destination's cache and head.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cache directory for this destination.
    pub fn cache_dir(&self, home: &Home) -> anyhow::Result<PathBuf> {
        home.cache_dir(&self.name)
    }

    fn head_path(&self, home: &Home) -> PathBuf {
        home.heads_dir().join(&self.name)
    }

    /// The newest snapshot's root score this machine recorded, with its
    /// head sequence (0 in a head file from before heads on servers).
    pub fn local_head(&self, home: &Home) -> anyhow::Result<Option<(Score, u64)>> {
        let path = self.head_path(home);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut words = text.split_whitespace();
        let bad = || format!("{} does not hold a score", path.display());
        let score = words
            .next()
            .and_then(|w| w.parse::<Score>().ok())
            .with_context(bad)?;
        let seq = match words.next() {
            Some(w) => w.parse::<u64>().ok().with_context(bad)?,
            None => 0,
        };
        Ok(Some((score, seq)))
    }

    /// Records a new head here (atomically: a crash leaves the old or the new).
    pub fn set_local_head(&self, home: &Home, score: &Score, seq: u64) -> anyhow::Result<()> {
        let path = self.head_path(home);
        let dir = path.parent().expect("heads dir");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        home::write_atomic(&path, format!("{score} {seq}\n").as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Syncs (after writing; a reader has nothing to make durable, and
    /// must not fail for a server that stops answering after the last
    /// read) and closes the store.
    pub fn close(&self) -> anyhow::Result<()> {
        match self.access {
            Access::Write => self.store.sync()?,
            // A repair syncs what it copied itself, server by server.
            Access::Repair => {
                self.circle.sync_members();
            }
            Access::Read | Access::Browse => {}
        }
        if let Some(local) = &self.local {
            local.close()?;
        }
        Ok(())
    }
}

/// The name that keys the cache and head of the destination `config`
/// names: `local` for the embedded store, `circle` for servers.
pub fn name_for(config: &Config) -> &'static str {
    if config.servers.is_empty() {
        "local"
    } else {
        CIRCLE
    }
}

/// Where a destination's shortfall book lives.
pub fn shortfalls_path(home: &Home, destination: &str) -> PathBuf {
    home.data
        .join("shortfalls")
        .join(format!("{destination}.json"))
}

/// Renames a home's head and cache from before the circle
/// (`servers-<hash of the sorted addresses>`) to `circle`, once.
fn migrate_legacy(home: &Home, config: &Config) -> anyhow::Result<()> {
    let head = home.heads_dir().join(CIRCLE);
    if head.exists() {
        return Ok(());
    }
    let mut sorted: Vec<&str> = config.servers.iter().map(|s| s.address()).collect();
    sorted.sort();
    let id = hex::encode(&Sha256::digest(sorted.join("\n").as_bytes())[..8]);
    let old = format!("servers-{id}");
    let old_head = home.heads_dir().join(&old);
    if !old_head.exists() {
        return Ok(());
    }
    let old_cache = home.cache.join(&old);
    let new_cache = home.cache.join(CIRCLE);
    if old_cache.exists() && !new_cache.exists() {
        std::fs::rename(&old_cache, &new_cache)
            .with_context(|| format!("renaming {}", old_cache.display()))?;
    }
    std::fs::rename(&old_head, &head).with_context(|| format!("renaming {}", old_head.display()))
}
