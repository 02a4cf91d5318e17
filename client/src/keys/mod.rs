//! The client's keys, typed by what they can do, and where they live.
//!
//! - [`FullKey`]: everything. Writes, seals and signs new roots, and
//!   opens roots (restores). What `eventi init` makes.
//! - [`WriteKey`]: writes blocks and seals and signs new roots, but cannot
//!   open a root: what a write-only machine holds (`eventi key export
//!   --write-only`). Sealing a root needs only the owner's *public*
//!   snapshot key.
//! - [`Key`]: what a home's key file holds, one or the other; a command
//!   that reads snapshots asks it for the [`FullKey`] and is refused
//!   with [`WriteOnlyError`] on a write-only machine.
//! - [`PublicKeys`]: who the owner is: the write key servers authorize,
//!   the snapshot key roots are sealed to.
//!
//! Code asks for the power it needs: a backup takes a [`WriteKey`], a
//! restore the [`FullKey`]. `keyfile` is the sealed file they come from,
//! `passphrase` how its passphrase is asked for.

pub mod keyfile;
pub mod paper;
pub mod passphrase;

use ed25519_dalek::{SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use keyfile::Secrets;

/// The owner's public keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKeys {
    /// The Ed25519 write key servers authorize and roots are signed with.
    pub write: VerifyingKey,
    /// The X25519 key snapshot roots are sealed to.
    pub snapshot: x25519_dalek::PublicKey,
}

/// The power to write: sign sessions and roots, encrypt blocks, seal
/// roots to the owner. Cannot open a root.
pub struct WriteKey {
    signing: SigningKey,
    convergence: Zeroizing<[u8; 32]>,
    owner: PublicKeys,
}

impl WriteKey {
    /// The write key, for Tauth0 and for signing roots.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The convergence secret that keys block encryption.
    pub fn convergence(&self) -> &[u8; 32] {
        &self.convergence
    }

    /// Whom new roots are sealed to.
    pub fn owner(&self) -> &PublicKeys {
        &self.owner
    }
}

impl WriteKey {
    /// The power to write that `secrets` hold (full or write-only).
    pub fn from_secrets(secrets: &Secrets) -> WriteKey {
        let signing = secrets.signing_key();
        WriteKey {
            owner: PublicKeys {
                write: signing.verifying_key(),
                snapshot: x25519_dalek::PublicKey::from(secrets.snapshot_public),
            },
            signing,
            convergence: Zeroizing::new(secrets.convergence),
        }
    }
}

impl std::fmt::Debug for WriteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteKey([redacted])")
    }
}

/// Every power: a [`WriteKey`] and the secret that opens roots.
pub struct FullKey {
    write: WriteKey,
    snapshot: x25519_dalek::StaticSecret,
}

impl FullKey {
    /// The keys held in an opened key file.
    pub fn from_secrets(secrets: &Secrets) -> Option<FullKey> {
        let signing = secrets.signing_key();
        let snapshot = x25519_dalek::StaticSecret::from(secrets.snapshot?);
        let owner = PublicKeys {
            write: signing.verifying_key(),
            snapshot: x25519_dalek::PublicKey::from(&snapshot),
        };
        Some(FullKey {
            write: WriteKey {
                signing,
                convergence: Zeroizing::new(secrets.convergence),
                owner,
            },
            snapshot,
        })
    }

    /// The power to write, which this key includes.
    pub fn write(&self) -> &WriteKey {
        &self.write
    }

    /// The owner's public keys.
    pub fn public(&self) -> &PublicKeys {
        &self.write.owner
    }

    /// The secret that opens sealed roots.
    pub fn snapshot_secret(&self) -> &x25519_dalek::StaticSecret {
        &self.snapshot
    }
}

impl std::fmt::Debug for FullKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FullKey([redacted])")
    }
}

/// A home's key: every power, or only the power to write.
#[derive(Debug)]
pub enum Key {
    /// The owner's key.
    Full(FullKey),
    /// A write-only machine's key.
    WriteOnly(WriteKey),
}

/// A command that reads snapshots, run with a write-only key.
#[derive(Debug, thiserror::Error)]
#[error("this home holds a write-only key: it can back up and put, but cannot {0} (that needs the owner's full key)")]
pub struct WriteOnlyError(pub String);

impl Key {
    /// The key `secrets` hold.
    pub fn from_secrets(secrets: &Secrets) -> Key {
        match FullKey::from_secrets(secrets) {
            Some(full) => Key::Full(full),
            None => Key::WriteOnly(WriteKey::from_secrets(secrets)),
        }
    }

    /// The power to write, which every key has.
    pub fn write(&self) -> &WriteKey {
        match self {
            Key::Full(f) => f.write(),
            Key::WriteOnly(w) => w,
        }
    }

    /// The full key, or why not: `doing` names what needed it.
    pub fn full(&self, doing: &str) -> Result<&FullKey, WriteOnlyError> {
        match self {
            Key::Full(f) => Ok(f),
            Key::WriteOnly(_) => Err(WriteOnlyError(doing.to_string())),
        }
    }

    /// Whether it is write-only.
    pub fn is_write_only(&self) -> bool {
        matches!(self, Key::WriteOnly(_))
    }

    /// This key's own public write key (the machine's, for a write-only key).
    pub fn write_public(&self) -> &VerifyingKey {
        &self.write().owner.write
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The powers are the key file's secrets: the public keys derive from
    /// them, and a root sealed with the write key alone opens with the full
    /// key.
    #[test]
    fn powers_come_from_the_secrets() {
        let secrets = Secrets::generate(None);
        let full = FullKey::from_secrets(&secrets).unwrap();
        assert_eq!(full.public().write, secrets.signing_key().verifying_key());
        assert_eq!(full.write().convergence(), &secrets.convergence);
        assert_eq!(
            full.public().snapshot,
            x25519_dalek::PublicKey::from(full.snapshot_secret())
        );
        assert_eq!(
            eventi_shared::public_key::format(&full.public().write.to_bytes(), ""),
            secrets.write_key_public()
        );
        assert!(!format!("{full:?}{:?}", full.write()).contains(&hex::encode(secrets.convergence)));
    }

    /// A write-only key writes for the same owner, with its own write key,
    /// and has no full key to give.
    #[test]
    fn a_write_only_key_seals_to_the_owner_but_cannot_open() {
        let owner = Secrets::generate(None);
        let machine = Key::from_secrets(&owner.write_only_for_another_machine());
        assert!(machine.is_write_only());
        assert!(machine.full("restore").is_err());
        let full = FullKey::from_secrets(&owner).unwrap();
        assert_eq!(machine.write().owner().snapshot, full.public().snapshot);
        assert_ne!(machine.write_public(), &full.public().write);
        assert_eq!(machine.write().convergence(), full.write().convergence());
        let e = machine.full("restore").unwrap_err().to_string();
        assert!(e.contains("write-only") && e.contains("restore"), "{e}");
    }
}
