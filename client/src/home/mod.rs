//! Where eventi keeps its files. With `$EVENTI_HOME` set, everything lives
//! there (`key`, `config.toml`, `store/`, `heads/`, `cache/`). Otherwise
//! the XDG base directories split them by kind: the key and config under
//! `$XDG_CONFIG_HOME/eventi` (`~/.config/eventi`), the embedded store and
//! the snapshot heads under `$XDG_DATA_HOME/eventi`
//! (`~/.local/share/eventi`), and the cache, which can always be rebuilt,
//! under `$XDG_CACHE_HOME/eventi` (`~/.cache/eventi`).
//!
//! Beside it: `config` (`config.toml`), `cache` (the per-destination
//! cache of files and blocks already stored), `lockfile` (one eventi
//! command at a time on a cache or an embedded store) and `shortfalls`
//! (which servers lack which snapshots).

pub mod cache;
pub mod config;
pub mod drops;
pub mod lockfile;
pub mod shortfalls;

use std::path::{Path, PathBuf};

use anyhow::Context;

/// eventi's directories.
#[derive(Clone, Debug)]
pub struct Home {
    /// The key file and `config.toml`.
    pub config: PathBuf,
    /// The embedded store and the heads (newest snapshot per destination).
    pub data: PathBuf,
    /// The per-destination caches.
    pub cache: PathBuf,
}

/// The contents of a CACHEDIR.TAG (bford.info/cachedir): other backup
/// tools skip a directory holding one.
const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by eventi.\n\
# For information about cache directory tags, see https://bford.info/cachedir/\n";

impl Home {
    /// Finds the directories from the environment.
    pub fn locate() -> anyhow::Result<Home> {
        if let Some(h) = std::env::var_os("EVENTI_HOME") {
            let h = std::path::absolute(PathBuf::from(h)).context("EVENTI_HOME")?;
            return Ok(Home {
                config: h.clone(),
                data: h.clone(),
                cache: h.join("cache"),
            });
        }
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let base = |var: &str, fallback: &str| -> anyhow::Result<PathBuf> {
            // The XDG spec says relative values are to be ignored.
            if let Some(dir) = std::env::var_os(var).map(PathBuf::from) {
                if dir.is_absolute() {
                    return Ok(dir.join("eventi"));
                }
            }
            let home = home
                .as_ref()
                .with_context(|| format!("none of EVENTI_HOME, {var} and HOME is set"))?;
            Ok(home.join(fallback).join("eventi"))
        };
        Ok(Home {
            config: base("XDG_CONFIG_HOME", ".config")?,
            data: base("XDG_DATA_HOME", ".local/share")?,
            cache: base("XDG_CACHE_HOME", ".cache")?,
        })
    }

    /// The key file.
    pub fn key_file(&self) -> PathBuf {
        self.config.join("key")
    }

    /// The config file.
    pub fn config_file(&self) -> PathBuf {
        self.config.join("config.toml")
    }

    /// The embedded store.
    pub fn store_dir(&self) -> PathBuf {
        self.data.join("store")
    }

    /// Where the newest root score per destination is kept.
    pub fn heads_dir(&self) -> PathBuf {
        self.data.join("heads")
    }

    /// The cache for one destination. Creates the cache directory (private,
    /// with a CACHEDIR.TAG) if needed.
    pub fn cache_dir(&self, destination: &str) -> anyhow::Result<PathBuf> {
        create_private_dir(&self.cache)?;
        let tag = self.cache.join("CACHEDIR.TAG");
        if !tag.exists() {
            std::fs::write(&tag, CACHEDIR_TAG)
                .with_context(|| format!("writing {}", tag.display()))?;
        }
        Ok(self.cache.join(destination))
    }

    /// Every directory eventi writes, without repeats (each is left out of
    /// backups).
    pub fn dirs(&self) -> Vec<&Path> {
        let mut dirs: Vec<&Path> = vec![&self.config];
        for d in [&self.data, &self.cache] {
            if !dirs.iter().any(|k| d.starts_with(k)) {
                dirs.push(d);
            }
        }
        dirs
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the
/// new one: a temporary file beside it, fsynced, then renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Creates `dir` (and parents) if missing, and makes it private (0700):
/// the home holds the key file, and the cache holds paths and the
/// references that read them.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_directories_are_listed_once() {
        let home = Home {
            config: "/h".into(),
            data: "/h".into(),
            cache: "/h/cache".into(),
        };
        assert_eq!(home.dirs(), vec![Path::new("/h")]);
        let xdg = Home {
            config: "/c/eventi".into(),
            data: "/d/eventi".into(),
            cache: "/k/eventi".into(),
        };
        assert_eq!(xdg.dirs().len(), 3);
    }
}
