//! The one tree walker: everything under a snapshot's tree, found the same
//! way by every command. [`children`] lists a directory, [`lookup`] finds
//! a path, and [`walk`] visits every entry below a directory, depth-first
//! in name order, each with its path, and (with [`Blocks::All`]) every
//! block each entry's content is made of. `ls`, `diff`, `restore` and
//! `cat` use it; `check`, `repair`, prune's mark and the mount will too.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use eventi_shared::Score;

use crate::format::block::Ref;
use crate::format::dirent::{self, DirError, Entry, Kind};
use crate::format::tree::Level;
use crate::store::BlockStore;
use crate::stream;

/// Why a walk or a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// A block of a content tree could not be read or opened.
    #[error(transparent)]
    Tree(#[from] stream::TreeError),
    /// A block of the content of the entry at `path` could not be read.
    #[error("{}: {source}", path.display())]
    Content {
        /// The entry's path in the snapshot.
        path: PathBuf,
        /// What failed.
        source: stream::TreeError,
    },
    /// A directory's stream does not decode.
    #[error("directory block {score}: {source}")]
    Directory {
        /// The directory stream's root.
        score: Score,
        /// What is wrong with it.
        source: DirError,
    },
    /// A directory entry without content.
    #[error("directory {0:?} has no content")]
    NoContent(String),
    /// A path goes through something that is not a directory.
    #[error("{0} is not a directory in the snapshot")]
    NotADirectory(PathBuf),
    /// A path names nothing.
    #[error("{0} is not in the snapshot")]
    NotFound(PathBuf),
    /// A path with `..` in it.
    #[error("{0}: `..` is not allowed in a snapshot path")]
    DotDot(PathBuf),
}

/// The entries of directory `dir`, in name order (none if it is not a
/// directory).
pub fn children(store: &dyn BlockStore, dir: &Entry) -> Result<Vec<Entry>, WalkError> {
    if dir.kind != Kind::Dir {
        return Ok(Vec::new());
    }
    let content = dir
        .content
        .ok_or_else(|| WalkError::NoContent(String::from_utf8_lossy(&dir.name).into_owned()))?;
    let stream = stream::read_all(store, &content)?;
    dirent::decode(&stream).map_err(|source| WalkError::Directory {
        score: content.score,
        source,
    })
}

/// The root of a snapshot's tree as an entry (a directory with no name).
pub fn root_entry(tree: Ref) -> Entry {
    Entry::bare_dir(Vec::new(), tree)
}

/// The entry at `path` (absolute within the snapshot, `/` for the root).
pub fn lookup(store: &dyn BlockStore, tree: Ref, path: &Path) -> Result<Entry, WalkError> {
    let mut here = root_entry(tree);
    let mut walked = PathBuf::from("/");
    for c in path.components() {
        let name = match c {
            Component::Normal(n) => n.as_bytes(),
            Component::RootDir | Component::CurDir => continue,
            _ => return Err(WalkError::DotDot(path.to_path_buf())),
        };
        if here.kind != Kind::Dir {
            return Err(WalkError::NotADirectory(walked));
        }
        let entries = children(store, &here)?;
        walked.push(std::ffi::OsStr::from_bytes(name));
        here = match entries.into_iter().find(|e| e.name == name) {
            Some(e) => e,
            None => return Err(WalkError::NotFound(walked)),
        };
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
/// visitor stopped it. The visitor's errors are its own type, which the
/// walk's own failures convert into.
pub fn walk<E: From<WalkError>>(
    store: &dyn BlockStore,
    dir: &Entry,
    path: &Path,
    blocks: Blocks,
    visit: &mut dyn FnMut(Visit<'_>) -> Result<Flow, E>,
) -> Result<Flow, E> {
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
fn content_blocks<E: From<WalkError>>(
    store: &dyn BlockStore,
    e: &Entry,
    path: &Path,
    visit: &mut dyn FnMut(Visit<'_>) -> Result<Flow, E>,
) -> Result<Flow, E> {
    let Some(content) = e.content else {
        return Ok(Flow::Continue);
    };
    let mut flow = Flow::Continue;
    let mut failed: Option<E> = None;
    stream::for_each_block(store, &content, &mut |r, level| {
        match visit(Visit::Block(path, r, level)) {
            Ok(Flow::Stop) => flow = Flow::Stop,
            Ok(_) => return Ok(true),
            Err(e) => failed = Some(e),
        }
        Ok(false)
    })
    .map_err(|source| {
        E::from(WalkError::Content {
            path: path.to_path_buf(),
            source,
        })
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok(flow),
    }
}
