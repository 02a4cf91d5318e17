//! The data log's segment files (`log/00000000.log`, ...), by number.
//! Numbers only grow, but need not be contiguous: compaction will remove
//! segments whose blocks all moved, so a gap is normal and a reader of a
//! removed segment gets [`StoreError::BadLocation`] naming it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::record::{Location, HEADER_LEN};
use crate::{private, BlockKey, StoreError};

/// The open segment files of one log directory.
pub struct Segments {
    dir: PathBuf,
    files: RwLock<BTreeMap<u32, Arc<File>>>,
}

impl Segments {
    /// Opens every segment in `dir` (created, unless `read_only`). If none
    /// is numbered `at_least` or more, segment `at_least` is created: the
    /// log always has a tail to append to.
    pub fn open(dir: &Path, at_least: u32, read_only: bool) -> Result<Segments, StoreError> {
        if !read_only {
            private::create_dir(dir).map_err(|e| StoreError::io("creating", dir, e))?;
        }
        let mut numbers = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| StoreError::io("listing", dir, e))? {
            let entry = entry.map_err(|e| StoreError::io("listing", dir, e))?;
            let name = entry.file_name();
            if let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".log"))
                .filter(|n| n.len() == 8)
                .and_then(|n| n.parse::<u32>().ok())
            {
                numbers.push(n);
            }
        }
        if numbers.iter().all(|&n| n < at_least) {
            numbers.push(at_least);
        }
        let mut files = BTreeMap::new();
        for n in numbers {
            let path = segment_path(dir, n);
            let file = private::file_options()
                .read(true)
                .write(!read_only)
                .create(!read_only)
                .truncate(false)
                .open(&path)
                .map_err(|e| StoreError::io("opening log segment", &path, e))?;
            files.insert(n, Arc::new(file));
        }
        Ok(Segments {
            dir: dir.to_path_buf(),
            files: RwLock::new(files),
        })
    }

    /// The path of segment `n`.
    pub fn path(&self, n: u32) -> PathBuf {
        segment_path(&self.dir, n)
    }

    /// The highest-numbered segment: where appends go.
    pub fn last(&self) -> (u32, Arc<File>) {
        let files = self.files.read().expect("segments lock");
        let (n, f) = files
            .iter()
            .next_back()
            .expect("the log has a tail segment");
        (*n, Arc::clone(f))
    }

    /// Every segment numbered `from` or more, in order.
    pub fn from(&self, from: u32) -> Vec<(u32, Arc<File>)> {
        let files = self.files.read().expect("segments lock");
        files
            .range(from..)
            .map(|(n, f)| (*n, Arc::clone(f)))
            .collect()
    }

    /// Whether segment `n` exists.
    pub fn contains(&self, n: u32) -> bool {
        self.files.read().expect("segments lock").contains_key(&n)
    }

    /// The file of the segment `loc` points into (for the error, `key`).
    pub fn get(&self, key: &BlockKey, loc: Location) -> Result<Arc<File>, StoreError> {
        let files = self.files.read().expect("segments lock");
        files.get(&loc.segment).cloned().ok_or_else(|| {
            StoreError::BadLocation(key.score, format!("no segment {}", loc.segment))
        })
    }

    /// Creates segment `n` (after the last) and makes it the tail; the
    /// directory is synced so the new file survives a crash.
    pub fn create(&self, n: u32) -> Result<Arc<File>, StoreError> {
        let path = self.path(n);
        let file = private::file_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::io("creating log segment", &path, e))?;
        let file = Arc::new(file);
        self.files
            .write()
            .expect("segments lock")
            .insert(n, Arc::clone(&file));
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(file)
    }
}

impl Segments {
    /// Removes segment `n` (compaction moved everything live out of it):
    /// readers holding its file keep reading it; new lookups miss it.
    pub fn remove(&self, n: u32) -> Result<(), StoreError> {
        let path = self.path(n);
        self.files.write().expect("segments lock").remove(&n);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("removing", &path, e)),
        }
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

fn segment_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}.log"))
}

/// Reads a whole record into a new buffer, skipping the zero-fill a
/// `vec![0; n]` would cost. With `nowait`, reads only if every byte is in
/// the page cache (`preadv2` with `RWF_NOWAIT`) and answers `Ok(None)`
/// otherwise.
pub fn read_record(file: &File, loc: Location, nowait: bool) -> std::io::Result<Option<Vec<u8>>> {
    use std::os::fd::AsRawFd;
    let want = HEADER_LEN + loc.len as usize;
    let mut buf: Vec<u8> = Vec::with_capacity(want);
    let flags = if nowait { libc::RWF_NOWAIT } else { 0 };
    while buf.len() < want {
        let missing = want - buf.len();
        let spare = &mut buf.spare_capacity_mut()[..missing];
        let iov = libc::iovec {
            iov_base: spare.as_mut_ptr().cast(),
            iov_len: spare.len(),
        };
        let at = loc.offset + buf.len() as u64;
        // SAFETY: the iovec covers the vector's spare capacity, which the
        // kernel only writes; the fd is open for the borrow of `file`.
        let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, at as libc::off_t, flags) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // Not cached, or a filesystem without RWF_NOWAIT.
                Some(libc::EAGAIN) | Some(libc::EOPNOTSUPP) if nowait => return Ok(None),
                _ => return Err(e),
            }
        }
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        // SAFETY: the kernel initialised the next `n` bytes.
        unsafe { buf.set_len(buf.len() + n as usize) };
        if nowait && buf.len() < want {
            // Part of the range is not cached.
            return Ok(None);
        }
    }
    Ok(Some(buf))
}

/// Starts writing `from..to` of `file` back to disk without waiting for
/// it (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`). Appends hand their
/// pages to the disk as they go, so a later `fdatasync` finds little left
/// to write: without it, a checkpoint's sync wrote hundreds of megabytes at
/// once, and ext4's journal commit held up every append meanwhile. Only a
/// hint: an error is ignored (the sync that follows reports real ones).
pub fn start_writeback(file: &File, from: u64, to: u64) {
    use std::os::fd::AsRawFd;
    if to <= from {
        return;
    }
    // SAFETY: a plain system call on an open descriptor; no memory is
    // passed.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            from as libc::off64_t,
            (to - from) as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Writes every slice at `offset` onward (`pwritev`, in chunks of at most
/// `IOV_MAX` slices, resuming after short writes).
pub fn pwrite_all(
    file: &File,
    mut bufs: &mut [IoSlice<'_>],
    mut offset: u64,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    const IOV_MAX: usize = 1024;
    while !bufs.is_empty() {
        let n = bufs.len().min(IOV_MAX);
        // SAFETY: IoSlice is ABI-compatible with iovec on Unix; the slices
        // borrow live buffers for the duration of the call.
        let written = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                bufs.as_ptr().cast::<libc::iovec>(),
                n as libc::c_int,
                offset as libc::off_t,
            )
        };
        if written < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        offset += written as u64;
        IoSlice::advance_slices(&mut bufs, written as usize);
    }
    Ok(())
}
