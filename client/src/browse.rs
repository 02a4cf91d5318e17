//! Finding things in a snapshot's tree: directory listings and paths.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use anyhow::{bail, Context};

use crate::block::Ref;
use crate::dirent::{self, Entry, Kind};
use crate::store::BlockStore;
use crate::tree;

/// The entries of the directory whose stream is `content`.
pub fn list(store: &dyn BlockStore, content: &Ref) -> anyhow::Result<Vec<Entry>> {
    let stream = tree::read_all(store, content)?;
    dirent::decode(&stream).with_context(|| format!("directory block {}", content.score))
}

/// The root of a snapshot's tree as an entry (a directory with no name).
pub fn root_entry(tree: Ref) -> Entry {
    Entry::bare_dir(Vec::new(), tree)
}

/// The entry at `path` (absolute within the snapshot, `/` for the root).
pub fn lookup(store: &dyn BlockStore, tree: Ref, path: &Path) -> anyhow::Result<Entry> {
    let mut here = root_entry(tree);
    let mut walked = std::path::PathBuf::from("/");
    for c in path.components() {
        let name = match c {
            Component::Normal(n) => n.as_bytes(),
            Component::RootDir | Component::CurDir => continue,
            _ => bail!("{}: `..` is not allowed in a snapshot path", path.display()),
        };
        if here.kind != Kind::Dir {
            bail!("{} is not a directory in the snapshot", walked.display());
        }
        let content = here.content.context("directory without content")?;
        let entries = list(store, &content)?;
        walked.push(std::ffi::OsStr::from_bytes(name));
        here = entries
            .into_iter()
            .find(|e| e.name == name)
            .with_context(|| format!("{} is not in the snapshot", walked.display()))?;
    }
    Ok(here)
}

/// Splits `SNAP[:PATH]` into the snapshot part and the path (`/` if none).
pub fn split_spec(spec: &str) -> (&str, &str) {
    match spec.split_once(':') {
        Some((snap, path)) if !path.is_empty() => (snap, path),
        Some((snap, _)) => (snap, "/"),
        None => (spec, "/"),
    }
}
