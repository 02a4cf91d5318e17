//! An opened eventi home: config, secrets, the store backups go to, the
//! cache directory and the snapshot chain's head, all for one destination.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use eventi_shared::{BlockType, Score};
use sha2::{Digest, Sha256};

use crate::home::{self, Home};
use crate::keys::{keyfile, passphrase, FullKey};
use crate::snapshot::Snapshot;
use crate::store::local::LocalStore;
use crate::store::multi::MultiStore;
use crate::store::venti::VentiStore;
use crate::store::{self, BlockStore};

/// `config.toml`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Venti servers to back up to; empty means the embedded store.
    #[serde(default)]
    pub servers: Vec<String>,
    /// How long a server may stay silent ("60s", "2m"; default 60 s):
    /// connecting, each handshake step, and while requests are in flight.
    #[serde(default)]
    pub timeout: Option<String>,
}

/// `--timeout` from the command line, which wins over the config's.
static TIMEOUT_OVERRIDE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

/// Sets the server deadline for this process (the global `--timeout`);
/// call once, before opening a repo.
pub fn override_timeout(timeout: Duration) {
    let _ = TIMEOUT_OVERRIDE.set(timeout);
}

/// Parses a duration: a number with `ms`, `s`, `m` or `h` (bare: seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (say 30s, 2m, 1h)"))?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use ms, s, m or h)"
            ))
        }
    };
    let secs = n * scale;
    if !(secs > 0.0 && secs < 1e9) {
        return Err(format!("{text:?} is not a positive duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl Config {
    /// The server deadline: `--timeout`, else the config's, else the default.
    pub fn timeout(&self) -> anyhow::Result<Duration> {
        if let Some(t) = TIMEOUT_OVERRIDE.get() {
            return Ok(*t);
        }
        match &self.timeout {
            Some(t) => parse_duration(t).map_err(|e| anyhow::anyhow!("config timeout: {e}")),
            None => Ok(eventi_shared::client::DEFAULT_TIMEOUT),
        }
    }
}

impl Config {
    /// Reads the config file; a missing one is the default config.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("in {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

/// What a command will do with the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Write a backup: every configured server must answer, or the backup
    /// would silently miss one.
    Write,
    /// Read: any server that answers will do (the others are named on stderr).
    Read,
}

/// See the module documentation.
pub struct Repo {
    /// eventi's directories.
    pub home: Home,
    /// The key file's keys.
    pub key: FullKey,
    /// Where blocks go.
    pub store: Arc<dyn BlockStore>,
    local: Option<Arc<LocalStore>>,
    /// Names the destination in the cache and heads directories.
    pub destination: String,
    access: Access,
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
        let pass = passphrase::get(passphrase_file, "EVENTI_PASSPHRASE", "Passphrase", false)?;
        Repo::open_with(&pass, access)
    }

    /// Opens the home with a passphrase already in hand.
    pub fn open_with(pass: &str, access: Access) -> anyhow::Result<Repo> {
        let home = Home::locate()?;
        let key_path = home.key_file();
        let name = key_path.display().to_string();
        let text = keyfile::read(&key_path)?;
        let key = FullKey::from_secrets(&keyfile::open(&text, pass.as_bytes(), &name)?);
        let config = Config::load(&home.config_file())?;
        let (store, local, destination): (Arc<dyn BlockStore>, _, _) = if config.servers.is_empty()
        {
            home::create_private_dir(&home.data)?;
            let local = Arc::new(LocalStore::open(&home.store_dir())?);
            (local.clone(), Some(local), "local".to_string())
        } else {
            let mut stores: Vec<Arc<dyn BlockStore>> = Vec::new();
            let mut unreachable = Vec::new();
            let timeout = config.timeout()?;
            for s in &config.servers {
                match VentiStore::connect(s, Some(key.write().signing_key().clone()), timeout) {
                    Ok(store) => stores.push(Arc::new(store)),
                    Err(e) if access == Access::Read => {
                        eprintln!("eventi: skipping {s}: {e}");
                        unreachable.push(e);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if stores.is_empty() {
                bail!("no configured server answers: {}", unreachable[0]);
            }
            let mut sorted = config.servers.clone();
            sorted.sort();
            let id = hex::encode(&Sha256::digest(sorted.join("\n").as_bytes())[..8]);
            let store: Arc<dyn BlockStore> = if stores.len() == 1 {
                stores.pop().expect("one")
            } else {
                Arc::new(MultiStore::new(stores))
            };
            (store, None, format!("servers-{id}"))
        };
        Ok(Repo {
            home,
            key,
            store,
            local,
            destination,
            access,
        })
    }

    /// The cache directory for this destination.
    pub fn cache_dir(&self) -> anyhow::Result<PathBuf> {
        self.home.cache_dir(&self.destination)
    }

    fn head_path(&self) -> PathBuf {
        self.home.heads_dir().join(&self.destination)
    }

    /// The newest snapshot's root score, if any.
    pub fn head(&self) -> anyhow::Result<Option<Score>> {
        let path = self.head_path();
        match std::fs::read_to_string(&path) {
            Ok(t) => t
                .trim()
                .parse::<Score>()
                .map(Some)
                .with_context(|| format!("{} does not hold a score", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Records a new head (atomically: a crash leaves the old or the new).
    pub fn set_head(&self, score: &Score) -> anyhow::Result<()> {
        let path = self.head_path();
        let dir = path.parent().expect("heads dir");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{score}\n"))
            .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
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
            .store
            .get(score, BlockType::DATA)
            .with_context(|| format!("reading snapshot {score}"))?;
        Ok(Snapshot::open(score, &block, self.key.snapshot_secret())?)
    }

    /// Whether `signer` is this key file's own write key.
    pub fn is_own_key(&self, signer: &ed25519_dalek::VerifyingKey) -> bool {
        *signer == self.key.public().write
    }

    /// Seals, stores and syncs a new snapshot root; makes it the head.
    /// Needs only the power to write: the root is sealed to the owner's
    /// public key and signed with the write key.
    pub fn commit_snapshot(&self, snapshot: &Snapshot) -> anyhow::Result<Score> {
        let write = self.key.write();
        let block = snapshot.seal(&write.owner().snapshot, write.signing_key());
        let score = store::put_wait(self.store.as_ref(), BlockType::DATA, block.into())?;
        self.store.sync()?;
        self.set_head(&score)?;
        Ok(score)
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
    pub fn signed_chain(
        &self,
    ) -> anyhow::Result<Vec<(Score, Snapshot, ed25519_dalek::VerifyingKey)>> {
        let mut out = Vec::new();
        let mut next = self.head()?;
        while let Some(score) = next {
            if out.len() > 1_000_000 {
                bail!("the snapshot chain loops");
            }
            let (snap, signer) = self.load_signed(score)?;
            next = snap.parent;
            out.push((score, snap, signer));
        }
        Ok(out)
    }

    /// Resolves `latest`, a full root score, or a unique hex prefix of
    /// one in the chain.
    pub fn resolve(&self, spec: &str) -> anyhow::Result<(Score, Snapshot)> {
        if spec == "latest" {
            let head = self
                .head()?
                .context("no snapshots yet (run `eventi backup`)")?;
            return Ok((head, self.load_snapshot(head)?));
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
        let mut found: Vec<(Score, Snapshot)> = self
            .chain()?
            .into_iter()
            .filter(|(s, _)| s.to_string().starts_with(&lower))
            .collect();
        match found.len() {
            0 => bail!("no snapshot in the chain starts with {spec}"),
            1 => Ok(found.pop().expect("one")),
            n => bail!("{spec} is ambiguous: {n} snapshots start with it"),
        }
    }

    /// Syncs (after writing; a reader has nothing to make durable, and
    /// must not fail for a server that stops answering after the last
    /// read) and closes the store.
    pub fn close(self) -> anyhow::Result<()> {
        if self.access == Access::Write {
            self.store.sync()?;
        }
        if let Some(local) = &self.local {
            local.close()?;
        }
        Ok(())
    }
}
