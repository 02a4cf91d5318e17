//! The client's keys, typed by what they can do, and where they live.
//!
//! - [`FullKey`]: everything. Writes, seals and signs new roots, and
//!   opens roots (restores). What `eventi init` makes.
//! - [`WriteKey`]: writes blocks and seals and signs new roots, but cannot
//!   open a root: what a write-only machine would hold. Sealing a root
//!   needs only the owner's *public* snapshot key.
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
    pub fn from_secrets(secrets: &Secrets) -> FullKey {
        let signing = secrets.signing_key();
        let snapshot = x25519_dalek::StaticSecret::from(secrets.snapshot);
        let owner = PublicKeys {
            write: signing.verifying_key(),
            snapshot: x25519_dalek::PublicKey::from(&snapshot),
        };
        FullKey {
            write: WriteKey {
                signing,
                convergence: Zeroizing::new(secrets.convergence),
                owner,
            },
            snapshot,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The powers are the key file's secrets: the public keys derive from
    /// them, and a root sealed with the write key alone opens with the full
    /// key.
    #[test]
    fn powers_come_from_the_secrets() {
        let secrets = Secrets::generate(None);
        let full = FullKey::from_secrets(&secrets);
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
}
