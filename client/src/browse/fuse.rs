//! The browser as a read-only FUSE filesystem (`eventi mount`), through
//! the `fuser` crate: each request answered from [`Browser`], errors as
//! errno values (a block that cannot be read is `EIO` for its file only).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};

use crate::browse::blocks::Sequence;
use crate::browse::{Attr, BrowseError, Browser, Listed};
use crate::format::dirent::Kind;

/// How long the kernel may keep what it was told: nothing in a snapshot
/// ever changes.
const TTL: Duration = Duration::from_secs(3600);

/// See the module documentation.
pub struct BrowseFs {
    browser: Arc<Browser>,
    next_handle: AtomicU64,
    /// Open files: where each reader is, for read-ahead.
    files: Mutex<HashMap<u64, Arc<Mutex<Sequence>>>>,
    /// Open directories: their listing, taken once at opendir.
    dirs: Mutex<HashMap<u64, Arc<Vec<Listed>>>>,
}

impl BrowseFs {
    /// A filesystem over `browser`.
    pub fn new(browser: Arc<Browser>) -> BrowseFs {
        BrowseFs {
            browser,
            next_handle: AtomicU64::new(1),
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
        }
    }

    fn handle(&self) -> u64 {
        self.next_handle.fetch_add(1, Relaxed)
    }
}

fn errno(e: &BrowseError) -> Errno {
    match e {
        BrowseError::NotFound => Errno::ENOENT,
        BrowseError::NotDir => Errno::ENOTDIR,
        BrowseError::NotFile => Errno::EISDIR,
        BrowseError::NotLink => Errno::EINVAL,
        BrowseError::Failed { .. } => Errno::EIO,
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
        Kind::File | Kind::Hardlink => FileType::RegularFile,
    }
}

fn time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// `a` as FUSE's attributes.
pub fn file_attr(a: &Attr) -> FileAttr {
    let t = time(a.mtime_ns);
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: file_type(a.kind),
        perm: (a.mode & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev as u32,
        blksize: 4096,
        flags: 0,
    }
}

impl Filesystem for BrowseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Best effort, one at a time: a kernel that lacks one keeps the
        // others. Listings come with attributes (no lookup per entry),
        // lookups in one directory run in parallel, and link targets are
        // cached like file pages.
        let _ = config.set_max_readahead(1 << 20);
        for flag in [
            fuser::InitFlags::FUSE_DO_READDIRPLUS,
            fuser::InitFlags::FUSE_PARALLEL_DIROPS,
            fuser::InitFlags::FUSE_CACHE_SYMLINKS,
        ] {
            let _ = config.add_capabilities(flag);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.browser.lookup(parent.0, name.as_bytes()) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.browser.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.browser.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self.browser.getattr(ino.0) {
            Ok(a) if a.kind == Kind::File => {
                let fh = self.handle();
                self.files
                    .lock()
                    .expect("open files")
                    .insert(fh, Default::default());
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE)
            }
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let seq = self.files.lock().expect("open files").get(&fh.0).cloned();
        let seq = seq.unwrap_or_default();
        let mut seq = seq.lock().expect("reader");
        match self.browser.read(ino.0, offset, size as usize, &mut seq) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: fuser::ReplyEmpty,
    ) {
        self.files.lock().expect("open files").remove(&fh.0);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.browser.readdir(ino.0) {
            Ok(entries) => {
                // "." and ".." first, then the entries: one list, so an
                // entry's offset is its place in it plus one, for readdir
                // and readdirplus alike.
                let parent = self.browser.parent(ino.0).unwrap_or(ino.0);
                let mut listing = Vec::with_capacity(entries.len() + 2);
                for (dot, target) in [(".", ino.0), ("..", parent)] {
                    if let Ok(attr) = self.browser.getattr(target) {
                        listing.push(Listed {
                            name: dot.as_bytes().to_vec(),
                            attr,
                        });
                    }
                }
                listing.extend(entries);
                let fh = self.handle();
                self.dirs
                    .lock()
                    .expect("open dirs")
                    .insert(fh, Arc::new(listing));
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE)
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(listing) = self.dirs.lock().expect("open dirs").get(&fh.0).cloned() else {
            return reply.error(Errno::EBADF);
        };
        for (i, l) in listing.iter().enumerate().skip(offset as usize) {
            let name = OsStr::from_bytes(&l.name);
            let kind = file_type(l.attr.kind);
            if reply.add(INodeNo(l.attr.ino), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok()
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let Some(listing) = self.dirs.lock().expect("open dirs").get(&fh.0).cloned() else {
            return reply.error(Errno::EBADF);
        };
        for (i, l) in listing.iter().enumerate().skip(offset as usize) {
            let name = OsStr::from_bytes(&l.name);
            let attr = file_attr(&l.attr);
            let next = i as u64 + 1;
            if reply.add(INodeNo(l.attr.ino), next, name, &TTL, &attr, Generation(0)) {
                break;
            }
        }
        reply.ok()
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: fuser::ReplyEmpty,
    ) {
        self.dirs.lock().expect("open dirs").remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.browser.xattr(ino.0, name.as_bytes()) {
            Err(e) => reply.error(errno(&e)),
            Ok(None) => reply.error(Errno::NO_XATTR),
            Ok(Some(v)) if size == 0 => reply.size(v.len() as u32),
            Ok(Some(v)) if v.len() > size as usize => reply.error(Errno::ERANGE),
            Ok(Some(v)) => reply.data(&v),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let xattrs = match self.browser.xattrs(ino.0) {
            Ok(x) => x,
            Err(e) => return reply.error(errno(&e)),
        };
        let mut names = Vec::new();
        for (k, _) in &xattrs {
            names.extend_from_slice(k);
            names.push(0);
        }
        if size == 0 {
            reply.size(names.len() as u32)
        } else if names.len() > size as usize {
            reply.error(Errno::ERANGE)
        } else {
            reply.data(&names)
        }
    }
}
