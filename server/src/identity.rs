//! The server's identity: an X25519 key pair made on first start in the
//! data directory (`identity`, mode 0600), whose public half friends pin
//! (`eventi-server identity` prints its line). Encrypted sessions
//! (`eventi_shared::session`) prove it to clients.
//!
//! File: `eventi-server identity v1\n` then the secret as 64 hex digits
//! and a newline (`docs/FORMAT.md`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// The identity file's name in the data directory.
pub const FILE: &str = "identity";
const HEADER: &str = "eventi-server identity v1";

/// Why the identity could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The file could not be read, created or written.
    #[error("server identity {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not an identity this version reads.
    #[error("server identity {0} is damaged or not an identity file: restore it from a backup (a new one would change the server's key, and every friend who pinned it would be refused)")]
    Damaged(PathBuf),
}

/// The server's key pair.
pub struct Identity {
    secret: x25519_dalek::StaticSecret,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Identity({})",
            eventi_shared::identity::format(&self.public(), "")
        )
    }
}

impl Identity {
    /// The public key friends pin.
    pub fn public(&self) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&self.secret).to_bytes()
    }

    /// The secret's bytes, for the session handshake.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// The identity in `data`, made (mode 0600, written whole or not at
    /// all) if there is none yet.
    pub fn load_or_create(data: &Path) -> Result<Identity, IdentityError> {
        let path = data.join(FILE);
        let io = |source| IdentityError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => return parse(&text).ok_or_else(|| IdentityError::Damaged(path.clone())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let secret: Zeroizing<[u8; 32]> = Zeroizing::new(rand::random());
        let text = Zeroizing::new(format!("{HEADER}\n{}\n", hex::encode(*secret)));
        let tmp = data.join(format!("{FILE}.tmp"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        // Never replace one that appeared meanwhile: a hard link fails if
        // the name exists, where a rename would overwrite it.
        match std::fs::hard_link(&tmp, &path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
        let _ = std::fs::remove_file(&tmp);
        if let Ok(d) = std::fs::File::open(data) {
            let _ = d.sync_all();
        }
        let text = std::fs::read_to_string(&path).map_err(io)?;
        parse(&text).ok_or(IdentityError::Damaged(path))
    }
}

fn parse(text: &str) -> Option<Identity> {
    let mut lines = text.lines();
    if lines.next()? != HEADER {
        return None;
    }
    let mut secret = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(lines.next()?.trim(), secret.as_mut()).ok()?;
    Some(Identity {
        secret: x25519_dalek::StaticSecret::from(*secret),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_private_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.public(), again.public());
        assert!(!dir.path().join("identity.tmp").exists());
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(!format!("{first:?}").contains(text.lines().nth(1).unwrap()));
        std::fs::write(dir.path().join(FILE), "something else\n").unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Damaged(_))
        ));
    }
}
