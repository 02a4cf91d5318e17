//! The browser's inode table and how it finds its way: each directory met
//! gets one range of numbers for its children, in name order, the first
//! time its entries are needed; a number is found again from the range it
//! falls in and the directory's listing (cached, read again if evicted);
//! hard links are walked to their first name, inside what is shown or
//! through the snapshot's hidden root.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::browse::{BrowseError, Browser, Ino, ROOT};
use crate::format::block::Ref;
use crate::format::dirent::{self, Entry, Kind};

/// Where a directory's entries come from.
#[derive(Clone)]
pub(super) enum Source {
    /// Made up by the browser (the chain's top, a file's own directory).
    Fixed(Arc<Vec<Entry>>),
    /// A directory stream in the store.
    Stream(Ref),
}

/// A directory the browser has met.
#[derive(Clone)]
pub(super) struct DirNode {
    pub(super) source: Source,
    /// Its path in the mount, for log lines.
    pub(super) path: PathBuf,
    /// Its directory, for `..`.
    pub(super) parent: Ino,
    /// Which snapshot it belongs to (`contexts`), for hard links.
    pub(super) context: Option<usize>,
}

/// A snapshot shown in the tree: where its hard links are resolved.
pub(super) struct Context {
    /// The directory shown for the snapshot's `prefix`.
    pub(super) top: Ino,
    /// The snapshot path of `top`.
    pub(super) prefix: PathBuf,
    /// The whole snapshot's tree, for first names outside `prefix`.
    pub(super) tree: Option<Ref>,
    /// That tree's hidden directory, once needed.
    pub(super) hidden: Option<Ino>,
}

#[derive(Default)]
pub(super) struct Table {
    pub(super) next: Ino,
    /// Each directory's range: first number -> (directory, count).
    pub(super) ranges: BTreeMap<Ino, (Ino, u64)>,
    pub(super) dirs: HashMap<Ino, Arc<DirNode>>,
    /// Each directory's first child number, once handed out.
    pub(super) bases: HashMap<Ino, Ino>,
    pub(super) contexts: Vec<Context>,
}

/// An entry where it lies: its directory's listing and its index, so
/// that looking at it copies nothing.
#[derive(Clone)]
pub(super) struct Located {
    pub(super) list: Arc<Vec<Entry>>,
    pub(super) index: usize,
}

impl std::ops::Deref for Located {
    type Target = Entry;
    fn deref(&self) -> &Entry {
        &self.list[self.index]
    }
}

impl Browser {
    /// The entry of `ino`, a hard link resolved to its first name.
    pub(super) fn resolved(&self, ino: Ino) -> Result<(Ino, Located), BrowseError> {
        let e = self.entry(ino)?;
        self.resolve_link(ino, e)
    }

    pub(super) fn entry(&self, ino: Ino) -> Result<Located, BrowseError> {
        if ino == ROOT {
            return Ok(self.root.clone());
        }
        let (dir, index) = self.place(ino)?;
        let node = self.dir(dir)?;
        Ok(Located {
            list: self.listing(dir, &node)?,
            index,
        })
    }

    /// The directory and index `ino` was handed out for.
    pub(super) fn place(&self, ino: Ino) -> Result<(Ino, usize), BrowseError> {
        let table = self.table.lock().expect("inode table");
        match table.ranges.range(..=ino).next_back() {
            Some((&base, &(dir, count))) if ino < base + count => Ok((dir, (ino - base) as usize)),
            _ => Err(BrowseError::NotFound),
        }
    }

    /// The directory `ino`, met now if its entry was handed out before.
    pub(super) fn dir(&self, ino: Ino) -> Result<Arc<DirNode>, BrowseError> {
        if let Some(d) = self.table.lock().expect("inode table").dirs.get(&ino) {
            return Ok(Arc::clone(d));
        }
        let (parent, i) = self.place(ino)?;
        let parent_node = self.dir(parent)?;
        let listing = self.listing(parent, &parent_node)?;
        let e = &listing[i];
        let (Kind::Dir, Some(content)) = (e.kind, e.content) else {
            return Err(BrowseError::NotDir);
        };
        let mut table = self.table.lock().expect("inode table");
        if let Some(d) = table.dirs.get(&ino) {
            return Ok(Arc::clone(d));
        }
        let context = if self.chain && parent == ROOT {
            table.contexts.push(Context {
                top: ino,
                prefix: PathBuf::from("/"),
                tree: Some(content),
                hidden: None,
            });
            Some(table.contexts.len() - 1)
        } else {
            parent_node.context
        };
        let node = Arc::new(DirNode {
            source: Source::Stream(content),
            path: parent_node.path.join(std::ffi::OsStr::from_bytes(&e.name)),
            parent,
            context,
        });
        table.dirs.insert(ino, Arc::clone(&node));
        Ok(node)
    }

    /// The entries of directory `ino` (cached).
    pub(super) fn listing(&self, ino: Ino, node: &DirNode) -> Result<Arc<Vec<Entry>>, BrowseError> {
        let content = match &node.source {
            Source::Fixed(entries) => return Ok(Arc::clone(entries)),
            Source::Stream(content) => content,
        };
        if let Some(l) = self.listings.get(&ino) {
            return Ok(l);
        }
        let stream = self
            .blocks
            .read_all(content)
            .map_err(|e| self.failed_dir(node, e.to_string()))?;
        let entries = dirent::decode(&stream).map_err(|e| {
            self.failed_dir(node, format!("directory block {}: {e}", content.score))
        })?;
        // The entry itself and its heap parts, each with malloc's overhead.
        let bytes: usize = entries
            .iter()
            .map(|e| {
                std::mem::size_of::<Entry>()
                    + 4 * 32
                    + e.name.len()
                    + e.target.len()
                    + e.user.len()
                    + e.group.len()
                    + e.xattrs
                        .iter()
                        .map(|(k, v)| 64 + k.len() + v.len())
                        .sum::<usize>()
            })
            .sum();
        let entries = Arc::new(entries);
        self.listings.insert(ino, Arc::clone(&entries), bytes);
        Ok(entries)
    }

    pub(super) fn failed_dir(&self, node: &DirNode, message: String) -> BrowseError {
        let path = node.path.display().to_string();
        eprintln!(
            "eventi: {path}: {message} (reading from {})",
            self.blocks.store_name()
        );
        BrowseError::Failed { path, message }
    }

    /// Directory `ino`'s first child number and its entries, numbers
    /// handed out the first time.
    pub(super) fn children(&self, ino: Ino) -> Result<(Ino, Arc<Vec<Entry>>), BrowseError> {
        let node = self.dir(ino)?;
        let entries = self.listing(ino, &node)?;
        let mut table = self.table.lock().expect("inode table");
        let table = &mut *table;
        let base = match table.bases.get(&ino) {
            Some(&base) => base,
            None => {
                let base = table.next;
                table.next += entries.len().max(1) as Ino;
                table.ranges.insert(base, (ino, entries.len() as u64));
                table.bases.insert(ino, base);
                base
            }
        };
        Ok((base, entries))
    }

    /// The entry `name` in directory `parent`, with its number.
    pub(super) fn child(&self, parent: Ino, name: &[u8]) -> Result<(Ino, Located), BrowseError> {
        let (base, list) = self.children(parent)?;
        match list.binary_search_by(|e| e.name.as_slice().cmp(name)) {
            Ok(index) => Ok((base + index as Ino, Located { list, index })),
            Err(_) => Err(BrowseError::NotFound),
        }
    }

    /// A hard link's first name (number and entry); anything else as is.
    pub(super) fn resolve_link(&self, ino: Ino, e: Located) -> Result<(Ino, Located), BrowseError> {
        if e.kind != Kind::Hardlink {
            return Ok((ino, e));
        }
        let target = PathBuf::from(std::ffi::OsStr::from_bytes(&e.target));
        let context = self
            .place(ino)
            .and_then(|(dir, _)| Ok(self.dir(dir)?.context));
        let start = match context {
            Ok(Some(c)) => self.link_start(c, &target),
            _ => None,
        };
        let Some((mut here, rest)) = start else {
            return Err(self.failed(
                ino,
                format!(
                    "a hard link to {}, which is outside what is shown",
                    target.display()
                ),
            ));
        };
        let mut found = None;
        for c in rest.components() {
            let Component::Normal(name) = c else { continue };
            let (i, entry) = self.child(here, name.as_bytes()).map_err(|_| {
                self.failed(
                    ino,
                    format!("its first name {} is not in the snapshot", target.display()),
                )
            })?;
            here = i;
            found = Some(entry);
        }
        match found {
            Some(first) if first.kind == Kind::File => Ok((here, first)),
            _ => Err(self.failed(
                ino,
                format!("its first name {} is not a file", target.display()),
            )),
        }
    }

    /// Where to walk `target` (a snapshot path) from in context `c`: the
    /// shown directory if the path is below it, else the snapshot's
    /// hidden root.
    pub(super) fn link_start(&self, c: usize, target: &Path) -> Option<(Ino, PathBuf)> {
        let mut table = self.table.lock().expect("inode table");
        let table = &mut *table;
        let context = &table.contexts[c];
        if let Ok(rest) = target.strip_prefix(&context.prefix) {
            return Some((context.top, rest.to_path_buf()));
        }
        let tree = context.tree?;
        let hidden = match context.hidden {
            Some(h) => h,
            None => {
                let h = table.next;
                table.next += 1;
                table.dirs.insert(
                    h,
                    Arc::new(DirNode {
                        source: Source::Stream(tree),
                        path: PathBuf::from("/"),
                        parent: h,
                        context: Some(c),
                    }),
                );
                table.contexts[c].hidden = Some(h);
                h
            }
        };
        Some((hidden, target.to_path_buf()))
    }
}
