//! The shortfall book: which servers of the circle lack which snapshots.
//!
//! A backup that leaves a server behind (down, full, refusing, silent)
//! records that server against the snapshot it made; a server that joins
//! the circle is recorded as lacking everything made before. `eventi
//! snapshots` shows the entries, `eventi repair` clears them once it has
//! filled the server, and `eventi check` finds any the book does not know.
//! It lives beside the heads (`shortfalls/<destination>.json`), not in
//! the cache, because losing it would hide a missing copy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use eventi_shared::Score;

/// See the module documentation.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Shortfalls {
    /// Per snapshot root (hex), per server address: why it was left behind.
    #[serde(default)]
    pub snapshots: BTreeMap<String, BTreeMap<String, String>>,
    /// Servers that joined and have not been repaired since: they lack
    /// every snapshot made before they joined. Address: when it joined.
    #[serde(default)]
    pub joined: BTreeMap<String, String>,
    #[serde(skip)]
    path: PathBuf,
}

impl Shortfalls {
    /// Reads the book at `path` (empty when missing).
    pub fn load(path: &Path) -> anyhow::Result<Shortfalls> {
        let mut book: Shortfalls = match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("{} is not a shortfall book", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Shortfalls::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        book.path = path.to_path_buf();
        Ok(book)
    }

    /// Writes the book back (atomically; an empty book removes the file).
    pub fn save(&self) -> anyhow::Result<()> {
        let path = &self.path;
        if self.snapshots.is_empty() && self.joined.is_empty() {
            return match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).with_context(|| format!("removing {}", path.display()))
                }
                _ => Ok(()),
            };
        }
        let dir = path.parent().expect("a book has a directory");
        crate::home::create_private_dir(dir)?;
        let text = serde_json::to_string_pretty(self)? + "\n";
        crate::home::write_atomic(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Records that the server at `address` lacks snapshot `root`.
    pub fn record(&mut self, root: &Score, address: &str, why: &str) {
        self.snapshots
            .entry(root.to_string())
            .or_default()
            .insert(address.to_string(), why.to_string());
    }

    /// Records that the server at `address` joined and holds nothing yet.
    pub fn joined(&mut self, address: &str, when: &str) {
        self.joined.insert(address.to_string(), when.to_string());
    }

    /// Forgets a server entirely (it left the circle).
    pub fn forget(&mut self, address: &str) {
        self.joined.remove(address);
        for servers in self.snapshots.values_mut() {
            servers.remove(address);
        }
        self.snapshots.retain(|_, s| !s.is_empty());
    }

    /// Clears what a repair filled: `address`'s entries for `roots`, or
    /// all of them (and its joined mark) when `roots` is `None`.
    pub fn clear(&mut self, address: &str, roots: Option<&[Score]>) {
        match roots {
            None => self.forget(address),
            Some(roots) => {
                for root in roots {
                    if let Some(servers) = self.snapshots.get_mut(&root.to_string()) {
                        servers.remove(address);
                    }
                }
                self.snapshots.retain(|_, s| !s.is_empty());
            }
        }
    }

    /// The servers (addresses) that lack `root`, and why.
    pub fn short_on(&self, root: &Score) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .snapshots
            .get(&root.to_string())
            .map(|s| s.iter().map(|(a, w)| (a.clone(), w.clone())).collect())
            .unwrap_or_default();
        for (address, when) in &self.joined {
            if !out.iter().any(|(a, _)| a == address) {
                out.push((
                    address.clone(),
                    format!("joined the circle {when} and has not been repaired"),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_recorded_kept_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shortfalls").join("circle.json");
        let (a, b) = (Score::of(b"a"), Score::of(b"b"));
        let mut book = Shortfalls::load(&path).unwrap();
        book.record(&a, "127.0.0.1:1", "connection refused");
        book.record(&b, "127.0.0.1:1", "connection refused");
        book.joined("127.0.0.1:2", "2026-12-02");
        book.save().unwrap();
        let mut book = Shortfalls::load(&path).unwrap();
        assert_eq!(book.short_on(&a).len(), 2);
        book.clear("127.0.0.1:1", Some(&[a]));
        assert_eq!(book.short_on(&a).len(), 1, "only the joined one is left");
        assert_eq!(book.short_on(&b).len(), 2);
        book.clear("127.0.0.1:2", None);
        book.clear("127.0.0.1:1", None);
        assert!(book.short_on(&b).is_empty());
        book.save().unwrap();
        assert!(!path.exists(), "an empty book is no file");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "garbage").unwrap();
        let err = Shortfalls::load(&path).unwrap_err();
        assert!(format!("{err:#}").contains("circle.json"), "{err:#}");
    }
}
