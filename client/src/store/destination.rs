//! Where a home's blocks go, and what the client keeps about it: the
//! store (the embedded one, one venti server, or several as one), the
//! name that keys its cache directory and its head, the head itself
//! (the newest snapshot root there), and closing it. Per-server records
//! and heads kept on the server will live here too.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use ed25519_dalek::SigningKey;
use eventi_shared::Score;
use sha2::{Digest, Sha256};

use crate::home::config::Config;
use crate::home::{self, Home};
use crate::store::local::LocalStore;
use crate::store::multi::MultiStore;
use crate::store::venti::VentiStore;
use crate::store::BlockStore;

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
pub struct Destination {
    store: Arc<dyn BlockStore>,
    /// Set for the embedded store, which must be closed.
    local: Option<Arc<LocalStore>>,
    /// `local`, or `servers-` and a hash of the sorted server list.
    name: String,
    access: Access,
}

impl Destination {
    /// Connects to what `config` names (the embedded store when it names no
    /// server), authenticating with `write_key`.
    pub fn open(
        home: &Home,
        config: &Config,
        write_key: &SigningKey,
        access: Access,
    ) -> anyhow::Result<Destination> {
        if config.servers.is_empty() {
            home::create_private_dir(&home.data)?;
            let local = Arc::new(LocalStore::open(&home.store_dir())?);
            return Ok(Destination {
                store: local.clone(),
                local: Some(local),
                name: "local".to_string(),
                access,
            });
        }
        let mut stores: Vec<Arc<dyn BlockStore>> = Vec::new();
        let mut unreachable = Vec::new();
        let timeout = config.timeout()?;
        for s in &config.servers {
            match VentiStore::connect(s, Some(write_key.clone()), timeout) {
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
        Ok(Destination {
            store,
            local: None,
            name: format!("servers-{id}"),
            access,
        })
    }

    /// The store blocks go to and come from.
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

    /// The newest snapshot's root score here, if any.
    pub fn head(&self, home: &Home) -> anyhow::Result<Option<Score>> {
        let path = self.head_path(home);
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
    pub fn set_head(&self, home: &Home, score: &Score) -> anyhow::Result<()> {
        let path = self.head_path(home);
        let dir = path.parent().expect("heads dir");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{score}\n"))
            .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Syncs (after writing; a reader has nothing to make durable, and
    /// must not fail for a server that stops answering after the last
    /// read) and closes the store.
    pub fn close(&self) -> anyhow::Result<()> {
        if self.access == Access::Write {
            self.store.sync()?;
        }
        if let Some(local) = &self.local {
            local.close()?;
        }
        Ok(())
    }
}
