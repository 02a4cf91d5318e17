//! Backups as a read-only file tree, for the FUSE mount and the 9P
//! server alike: inode numbers, attributes, directory listings, links,
//! extended attributes and file reads, all read on demand from the block
//! trees (no index, nothing loaded up front).
//!
//! Inode numbers are handed out a directory at a time: the first time a
//! directory's entries are needed, its children get the next `n` numbers,
//! in name order, and keep them for the life of the browser. So the table
//! holds one range per directory seen, never one record per file, and an
//! entry is found again from its number by the range it falls in and the
//! directory's (cached) listing. A hard link shows its first name's
//! number, so both names are one inode.

pub mod blocks;
pub mod cache;
pub mod fuse;
mod inodes;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::browse::blocks::{Blocks, Sequence};
use crate::browse::cache::ByteLru;
use crate::browse::inodes::{Context, DirNode, Located, Source, Table};
use crate::format::block::Ref;
use crate::format::dirent::{Entry, Kind};

/// An inode number.
pub type Ino = u64;

/// Directories below a listed one whose first block is fetched ahead.
const DIRS_AHEAD: usize = 256;

/// Extended attributes: (name, value), sorted by name.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// The top directory's number (FUSE's root).
pub const ROOT: Ino = 1;

/// Why an operation on the tree failed.
#[derive(Debug, thiserror::Error)]
pub enum BrowseError {
    /// No entry by that name or number.
    #[error("no such file or directory")]
    NotFound,
    /// A directory operation on something else.
    #[error("not a directory")]
    NotDir,
    /// A read of something that is not a file.
    #[error("not a regular file")]
    NotFile,
    /// A link read of something that is not a symbolic link.
    #[error("not a symbolic link")]
    NotLink,
    /// A block could not be read or opened; already logged with the
    /// path and the store.
    #[error("{path}: {message}")]
    Failed {
        /// The entry's path in the mount.
        path: String,
        /// What failed (naming the block and the server).
        message: String,
    },
}

/// What the top of the tree is.
pub enum Top {
    /// A directory of snapshots, named by time and short root score,
    /// with `latest` a symbolic link to the newest.
    Chain(Vec<ChainSnapshot>),
    /// One entry: a snapshot's tree or a directory in it, or what a
    /// capability names. A file is shown inside a directory of its own.
    Tree {
        /// The entry.
        entry: Box<Entry>,
        /// Its path in its snapshot (`/` for a whole snapshot); hard links
        /// are resolved against it.
        path: PathBuf,
        /// The whole snapshot's tree, where known, for hard links whose
        /// first name lies outside what is shown.
        snapshot_tree: Option<Ref>,
    },
}

/// One snapshot of a [`Top::Chain`].
pub struct ChainSnapshot {
    /// Its root score, for the name.
    pub root: eventi_shared::Score,
    /// When it was taken.
    pub time_ns: i64,
    /// Its tree.
    pub tree: Ref,
}

/// What an entry is, as `stat` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Its inode number (a hard link's is its first name's).
    pub ino: Ino,
    /// What it is (never `Hardlink`: resolved).
    pub kind: Kind,
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    /// Link count (1 where the snapshot did not record it).
    pub nlink: u32,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Size in bytes (a symbolic link's: its target's length).
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Device number of a device.
    pub rdev: u64,
    /// Owner name, if recorded.
    pub user: String,
    /// Group name, if recorded.
    pub group: String,
    /// A symbolic link's target.
    pub target: Vec<u8>,
}

/// A directory's entry as a listing shows it.
pub struct Listed {
    /// Its name.
    pub name: Vec<u8>,
    /// Its attributes.
    pub attr: Attr,
}

/// See the module documentation.
pub struct Browser {
    blocks: Blocks,
    table: Mutex<Table>,
    listings: ByteLru<Ino, Arc<Vec<Entry>>>,
    /// The top's own entry, as a listing of one.
    root: Located,
    /// Whether the top is a chain (its children are snapshots).
    chain: bool,
}

/// The name of a chain's snapshot directory: UTC time and short score.
pub fn snapshot_dir_name(s: &ChainSnapshot) -> Vec<u8> {
    let time = eventi_shared::time::format_utc(s.time_ns.div_euclid(1_000_000_000));
    let score = s.root.to_string();
    format!("{}Z-{}", time.replace(' ', "T"), &score[..8]).into_bytes()
}

/// A directory the browser makes up (the top of a chain, the directory
/// around a single file): no content in the store.
fn made_up_dir() -> Entry {
    let none = Ref {
        score: eventi_shared::Score([0; 20]),
        key: [0; 32],
        check: [0; 32],
    };
    Entry {
        content: None,
        ..Entry::bare_dir(Vec::new(), none)
    }
}

impl Browser {
    /// A browser of `top`, reading through `store` with a cache of
    /// `cache_bytes` (three quarters for blocks, the rest for listings).
    pub fn new(store: Arc<dyn crate::store::BlockStore>, top: Top, cache_bytes: usize) -> Browser {
        let blocks = Blocks::new(store, cache_bytes / 4 * 3);
        let listings = ByteLru::new(cache_bytes / 4);
        let mut table = Table {
            next: ROOT + 1,
            ..Table::default()
        };
        let (root, source, chain) = match top {
            Top::Chain(mut snapshots) => {
                snapshots.sort_by_key(|s| std::cmp::Reverse(s.time_ns));
                let mut entries: Vec<Entry> = snapshots
                    .iter()
                    .map(|s| {
                        let mut e = Entry::bare_dir(snapshot_dir_name(s), s.tree);
                        e.mtime_ns = s.time_ns;
                        e
                    })
                    .collect();
                if let Some(newest) = snapshots.first() {
                    let mut latest = Entry::bare_dir(b"latest".to_vec(), newest.tree);
                    latest.kind = Kind::Symlink;
                    latest.mode = 0o120777;
                    latest.content = None;
                    latest.target = snapshot_dir_name(newest);
                    latest.mtime_ns = newest.time_ns;
                    entries.push(latest);
                }
                entries.sort_by(|a, b| a.name.cmp(&b.name));
                let mut root = made_up_dir();
                root.mode = 0o040555;
                root.mtime_ns = snapshots.first().map_or(0, |s| s.time_ns);
                (root, Source::Fixed(Arc::new(entries)), true)
            }
            Top::Tree {
                entry,
                path,
                snapshot_tree,
            } => {
                let (root, source, prefix) = match (entry.kind, entry.content) {
                    (Kind::Dir, Some(content)) => (*entry, Source::Stream(content), path),
                    _ => {
                        let parent = path.parent().unwrap_or(Path::new("/")).to_path_buf();
                        let mut root = made_up_dir();
                        root.mtime_ns = entry.mtime_ns;
                        (root, Source::Fixed(Arc::new(vec![*entry])), parent)
                    }
                };
                table.contexts.push(Context {
                    top: ROOT,
                    prefix,
                    tree: snapshot_tree,
                    hidden: None,
                });
                (root, source, false)
            }
        };
        table.dirs.insert(
            ROOT,
            Arc::new(DirNode {
                source,
                path: PathBuf::from("/"),
                parent: ROOT,
                context: (!chain).then_some(0),
            }),
        );
        Browser {
            blocks,
            table: Mutex::new(table),
            listings,
            root: Located {
                list: Arc::new(vec![root]),
                index: 0,
            },
            chain,
        }
    }

    /// The blocks layer (its counters, its store's name).
    pub fn blocks(&self) -> &Blocks {
        &self.blocks
    }

    /// The attributes of `ino`.
    pub fn getattr(&self, ino: Ino) -> Result<Attr, BrowseError> {
        let (ino, entry) = self.resolved(ino)?;
        Ok(self.attr(ino, &entry))
    }

    /// The entry `name` in directory `parent`, resolved.
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr, BrowseError> {
        let (ino, entry) = self.child(parent, name)?;
        let (ino, entry) = self.resolve_link(ino, entry)?;
        Ok(self.attr(ino, &entry))
    }

    /// The directory above `ino` (the top's is the top).
    pub fn parent(&self, ino: Ino) -> Result<Ino, BrowseError> {
        Ok(self.dir(ino)?.parent)
    }

    /// Everything in directory `ino`, in name order, with attributes
    /// (hard links resolved; one that cannot be shows as itself).
    pub fn readdir(&self, ino: Ino) -> Result<Vec<Listed>, BrowseError> {
        let (base, entries) = self.children(ino)?;
        // A listing is often followed by the listings below it.
        let below: Vec<Ref> = entries
            .iter()
            .filter(|e| e.kind == Kind::Dir)
            .filter_map(|e| e.content)
            .take(DIRS_AHEAD)
            .collect();
        self.blocks.fetch_soon(below);
        Ok(entries
            .iter()
            .enumerate()
            .map(|(index, e)| {
                let own = base + index as Ino;
                let link = Located {
                    list: Arc::clone(&entries),
                    index,
                };
                let attr = match e.kind {
                    Kind::Hardlink => match self.resolve_link(own, link) {
                        Ok((ino, target)) => self.attr(ino, &target),
                        Err(_) => self.attr(own, e),
                    },
                    _ => self.attr(own, e),
                };
                Listed {
                    name: e.name.clone(),
                    attr,
                }
            })
            .collect())
    }

    /// A symbolic link's target.
    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>, BrowseError> {
        let (_, e) = self.resolved(ino)?;
        match e.kind {
            Kind::Symlink => Ok(e.target.clone()),
            _ => Err(BrowseError::NotLink),
        }
    }

    /// The extended attributes of `ino`, sorted by name.
    pub fn xattrs(&self, ino: Ino) -> Result<Xattrs, BrowseError> {
        Ok(self.resolved(ino)?.1.xattrs.clone())
    }

    /// The value of extended attribute `name` of `ino`, if it has one.
    pub fn xattr(&self, ino: Ino, name: &[u8]) -> Result<Option<Vec<u8>>, BrowseError> {
        let (_, e) = self.resolved(ino)?;
        Ok(e.xattrs
            .iter()
            .find(|(k, _)| k.as_slice() == name)
            .map(|(_, v)| v.clone()))
    }

    /// Up to `len` bytes of file `ino` from `offset`, for a reader at
    /// `seq` (read-ahead follows readers that read in order).
    pub fn read(
        &self,
        ino: Ino,
        offset: u64,
        len: usize,
        seq: &mut Sequence,
    ) -> Result<Vec<u8>, BrowseError> {
        let (ino, e) = self.resolved(ino)?;
        if e.kind != Kind::File {
            return Err(BrowseError::NotFile);
        }
        if offset >= e.size {
            return Ok(Vec::new());
        }
        let Some(content) = e.content else {
            return Err(self.failed(ino, "file entry without content".into()));
        };
        let len = len.min((e.size - offset).min(usize::MAX as u64) as usize);
        self.blocks
            .read_in_sequence(&content, offset, len, seq)
            .map_err(|err| self.failed(ino, err.to_string()))
    }

    /// The path of `ino` in the mount, for log lines.
    pub fn path_of(&self, ino: Ino) -> PathBuf {
        if ino == ROOT {
            return PathBuf::from("/");
        }
        let found = self.place(ino).and_then(|(dir, i)| {
            let node = self.dir(dir)?;
            let entries = self.listing(dir, &node)?;
            let name = std::ffi::OsStr::from_bytes(&entries[i].name);
            Ok(node.path.join(name))
        });
        found.unwrap_or_else(|_| PathBuf::from(format!("<inode {ino}>")))
    }

    /// A failure at `ino`, logged with its path and the store.
    fn failed(&self, ino: Ino, message: String) -> BrowseError {
        let path = self.path_of(ino).display().to_string();
        eprintln!(
            "eventi: {path}: {message} (reading from {})",
            self.blocks.store_name()
        );
        BrowseError::Failed { path, message }
    }

    fn attr(&self, ino: Ino, e: &Entry) -> Attr {
        let size = match e.kind {
            Kind::Symlink => e.target.len() as u64,
            Kind::File => e.size,
            _ => 0,
        };
        Attr {
            ino,
            kind: e.kind,
            mode: e.mode,
            nlink: e.nlink.max(1),
            uid: e.uid,
            gid: e.gid,
            size,
            mtime_ns: e.mtime_ns,
            rdev: e.rdev,
            user: e.user.clone(),
            group: e.group.clone(),
            target: if e.kind == Kind::Symlink {
                e.target.clone()
            } else {
                Vec::new()
            },
        }
    }
}
