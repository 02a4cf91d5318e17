//! The one tree walker: everything under a snapshot's tree, found the same
//! way by every command. [`children`] lists a directory, [`lookup`] finds
//! a path, and [`walk`] visits every entry below a directory, depth-first
//! in name order, each with its path, and (with [`Blocks::All`]) every
//! block each entry's content is made of. `ls`, `diff`, `restore` and
//! `cat` use it; `check`, `repair`, prune's mark and the mount will too.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};

use crate::format::block::Ref;
use crate::format::dirent::{self, Entry, Kind};
use crate::format::tree::Level;
use crate::store::BlockStore;
use crate::stream;

/// The entries of directory `dir`, in name order (none if it is not a
/// directory).
pub fn children(store: &dyn BlockStore, dir: &Entry) -> anyhow::Result<Vec<Entry>> {
    if dir.kind != Kind::Dir {
        return Ok(Vec::new());
    }
    let content = dir.content.context("directory without content")?;
    let stream = stream::read_all(store, &content)?;
    dirent::decode(&stream).with_context(|| format!("directory block {}", content.score))
}

/// The root of a snapshot's tree as an entry (a directory with no name).
pub fn root_entry(tree: Ref) -> Entry {
    Entry::bare_dir(Vec::new(), tree)
}

/// The entry at `path` (absolute within the snapshot, `/` for the root).
pub fn lookup(store: &dyn BlockStore, tree: Ref, path: &Path) -> anyhow::Result<Entry> {
    let mut here = root_entry(tree);
    let mut walked = PathBuf::from("/");
    for c in path.components() {
        let name = match c {
            Component::Normal(n) => n.as_bytes(),
            Component::RootDir | Component::CurDir => continue,
            _ => bail!("{}: `..` is not allowed in a snapshot path", path.display()),
        };
        if here.kind != Kind::Dir {
            bail!("{} is not a directory in the snapshot", walked.display());
        }
        let entries = children(store, &here)?;
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

/// Whether [`walk`] reports blocks too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocks {
    /// Entries only.
    None,
    /// Every block of every directory and file content, pointer blocks
    /// included, each fetched and checked.
    All,
}

/// What [`walk`] reports, in order: a directory's entry comes before
/// its blocks, and its blocks before its children.
#[derive(Debug)]
pub enum Visit<'a> {
    /// An entry, with its path in the snapshot.
    Entry(&'a Path, &'a Entry),
    /// A block of the content of the entry at the path.
    Block(&'a Path, Ref, Level),
}

/// What to do after a visit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Go on, into the entry if it is a directory.
    Continue,
    /// Go on, but not into this entry (its blocks and children).
    Skip,
    /// End the walk.
    Stop,
}

/// Visits every entry below directory `dir` (not `dir` itself), whose
/// path is `path`, depth-first in name order. Returns `Flow::Stop` if the
/// visitor stopped it.
pub fn walk(
    store: &dyn BlockStore,
    dir: &Entry,
    path: &Path,
    blocks: Blocks,
    visit: &mut dyn FnMut(Visit<'_>) -> anyhow::Result<Flow>,
) -> anyhow::Result<Flow> {
    for e in children(store, dir)? {
        let p = path.join(std::ffi::OsStr::from_bytes(&e.name));
        match visit(Visit::Entry(&p, &e))? {
            Flow::Stop => return Ok(Flow::Stop),
            Flow::Skip => continue,
            Flow::Continue => {}
        }
        if blocks == Blocks::All && content_blocks(store, &e, &p, visit)? == Flow::Stop {
            return Ok(Flow::Stop);
        }
        if e.kind == Kind::Dir && walk(store, &e, &p, blocks, visit)? == Flow::Stop {
            return Ok(Flow::Stop);
        }
    }
    Ok(Flow::Continue)
}

/// Reports the blocks of `e`'s content (a file's data, a directory's
/// stream); nothing for entries without content.
fn content_blocks(
    store: &dyn BlockStore,
    e: &Entry,
    path: &Path,
    visit: &mut dyn FnMut(Visit<'_>) -> anyhow::Result<Flow>,
) -> anyhow::Result<Flow> {
    let Some(content) = e.content else {
        return Ok(Flow::Continue);
    };
    let mut flow = Flow::Continue;
    let mut failed: Option<anyhow::Error> = None;
    stream::for_each_block(store, &content, &mut |r, level| {
        match visit(Visit::Block(path, r, level)) {
            Ok(Flow::Stop) => flow = Flow::Stop,
            Ok(_) => return Ok(true),
            Err(e) => failed = Some(e),
        }
        Ok(false)
    })
    .with_context(|| format!("{}: content", path.display()))?;
    match failed {
        Some(e) => Err(e),
        None => Ok(flow),
    }
}
