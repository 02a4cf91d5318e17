//! Free space on the data directory's filesystem, and the reserve the
//! store keeps there: new blocks are refused ("server disk full") while
//! storing them would leave less than the reserve, so that RocksDB and
//! the data log always have room to open, recover, flush and compact.
//! Without a reserve a full disk wedges the index (RocksDB writes a new
//! MANIFEST at every open) and the server cannot even start to serve reads.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How much free space to keep (the `[storage] reserve` setting).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reserve {
    /// The larger of 1 GiB and 1% of the filesystem, but never more than
    /// a tenth of it (so a small test filesystem can still be written).
    #[default]
    Auto,
    /// Exactly this many bytes (0 turns the reserve off).
    #[serde(untagged)]
    Bytes(#[serde(deserialize_with = "size_from_text")] u64),
}

fn size_from_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u64),
        Text(String),
    }
    match Either::deserialize(d)? {
        Either::Number(n) => Ok(n),
        Either::Text(t) => eventi_shared::size::parse_size(&t).map_err(serde::de::Error::custom),
    }
}

impl Reserve {
    /// The reserve in bytes on a filesystem of `total` bytes.
    pub fn bytes(&self, total: u64) -> u64 {
        match self {
            Reserve::Auto => (1u64 << 30).max(total / 100).min(total / 10),
            Reserve::Bytes(n) => *n,
        }
    }
}

/// Space on a filesystem, from statvfs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Space {
    /// Bytes an unprivileged writer may still use.
    pub free: u64,
    /// The filesystem's size.
    pub total: u64,
}

/// Reads the space on the filesystem holding `path`.
pub fn space_of(path: &Path) -> std::io::Result<Space> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut v: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `v` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut v) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let unit = v.f_frsize as u64;
    Ok(Space {
        free: v.f_bavail as u64 * unit,
        total: v.f_blocks as u64 * unit,
    })
}

/// The data directory's reserve, checked before each batch of new blocks.
#[derive(Debug)]
pub struct SpaceGuard {
    dir: PathBuf,
    reserve: Reserve,
}

impl SpaceGuard {
    /// Guards the filesystem of `dir`.
    pub fn new(dir: &Path, reserve: Reserve) -> SpaceGuard {
        SpaceGuard {
            dir: dir.to_path_buf(),
            reserve,
        }
    }

    /// Free space and the reserve in bytes now; `None` if statvfs fails
    /// (then nothing is refused for space: the disk's own errors remain).
    pub fn now(&self) -> Option<(Space, u64)> {
        let space = space_of(&self.dir).ok()?;
        Some((space, self.reserve.bytes(space.total)))
    }

    /// Bytes of new data that may still be written above the reserve.
    pub fn room(&self) -> Option<u64> {
        let (space, reserve) = self.now()?;
        Some(space.free.saturating_sub(reserve))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_reserve_scales_with_the_filesystem() {
        let gib = 1u64 << 30;
        assert_eq!(Reserve::Auto.bytes(48 << 20), (48 << 20) / 10);
        assert_eq!(Reserve::Auto.bytes(50 * gib), gib);
        assert_eq!(Reserve::Auto.bytes(1000 * gib), 10 * gib);
        assert_eq!(Reserve::Bytes(5).bytes(1000), 5);
    }

    #[test]
    fn reserve_parses_from_config_text() {
        #[derive(Deserialize)]
        struct T {
            reserve: Reserve,
        }
        let t: T = toml::from_str("reserve = \"auto\"").unwrap();
        assert_eq!(t.reserve, Reserve::Auto);
        let t: T = toml::from_str("reserve = \"8MiB\"").unwrap();
        assert_eq!(t.reserve, Reserve::Bytes(8 << 20));
        let t: T = toml::from_str("reserve = 0").unwrap();
        assert_eq!(t.reserve, Reserve::Bytes(0));
        assert!(toml::from_str::<T>("reserve = \"lots\"").is_err());
    }

    #[test]
    fn space_of_a_real_directory() {
        let s = space_of(Path::new("/")).unwrap();
        assert!(s.total > 0 && s.free <= s.total);
    }
}
