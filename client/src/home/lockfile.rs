//! One eventi command at a time on a cache or an embedded store: an
//! advisory lock (flock) on `eventi.lock` in its directory, holding the
//! holder's pid, taken without waiting. Its own lock, rather than
//! RocksDB's LOCK file, so that "in use" is a typed answer and never
//! mistaken for damage (which would invite deleting what is in use).

use std::fs::File;
use std::path::Path;

/// The lock file's name in the locked directory.
pub const LOCK_FILE: &str = "eventi.lock";

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("in use by another eventi command (pid {holder}) on this home; wait for it to finish")]
    Held {
        /// What the lock file says of its holder.
        holder: String,
    },
    /// The lock file could not be opened or locked.
    #[error("lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// An exclusive lock on a directory, released when dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock on `dir` (which must exist), or says who holds it.
    pub fn take(dir: &Path) -> Result<DirLock, LockError> {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(LockError::Held {
                    holder: holder.trim().to_string(),
                });
            }
            return Err(io(e));
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::take(dir.path()).unwrap();
        // flock locks belong to open files: a second open in this process
        // conflicts like another process would.
        match DirLock::take(dir.path()) {
            Err(LockError::Held { holder }) => assert_eq!(holder, std::process::id().to_string()),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        DirLock::take(dir.path()).unwrap();
    }
}
