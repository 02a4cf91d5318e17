//! The key file: the client's secrets, sealed under the passphrase.
//!
//! Format (`docs/FORMAT.md`): a TOML file holding the public halves in
//! clear (so `eventi key public` needs no passphrase) and the secrets
//! sealed with XChaCha20-Poly1305 under a key from Argon2id(passphrase,
//! salt) with 64 MiB of memory. The public fields are the AEAD's
//! associated data, so they cannot be swapped without the seal failing;
//! after opening, the public keys are re-derived and compared too.
//!
//! A write-only key file (`kind = "write-only"`, made by `eventi key
//! export --write-only` for another machine) holds its own write key and
//! the owner's convergence secret, sealed; the owner's snapshot public
//! key in clear; and no snapshot secret at all. Its kind is in the
//! associated data and in the sealed layout's version byte, so neither
//! can be changed without the seal failing.

use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The format name written in every key file.
pub const FORMAT: &str = "eventi-keyfile-v1";
const SECRETS_VERSION: u8 = 1;
const SECRETS_LEN: usize = 1 + 32 * 3;
/// Sealed layout of a write-only key: version, write key, convergence.
const WRITE_ONLY_VERSION: u8 = 2;
const WRITE_ONLY_LEN: usize = 1 + 32 * 2;
/// The `kind` of a write-only key file.
pub const WRITE_ONLY: &str = "write-only";

/// Argon2id cost: 64 MiB, 3 passes, 1 lane (the minimum the design allows).
pub const KDF_MEMORY_KIB: u32 = 64 * 1024;
const KDF_ITERATIONS: u32 = 3;
const KDF_PARALLELISM: u32 = 1;

/// The client's secrets. Zeroized on drop; never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secrets {
    /// Ed25519 seed of the write key (authenticates writes to servers).
    pub write_key: [u8; 32],
    /// Convergence secret: keys the convergent encryption of blocks.
    pub convergence: [u8; 32],
    /// X25519 secret that opens sealed snapshot roots; `None` in a
    /// write-only key.
    pub snapshot: Option<[u8; 32]>,
    /// The owner's X25519 public key, which roots are sealed to.
    pub snapshot_public: [u8; 32],
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets([redacted])")
    }
}

impl Secrets {
    /// Fresh random secrets, with a given convergence secret if one is
    /// shared on purpose within a circle.
    pub fn generate(convergence: Option<[u8; 32]>) -> Secrets {
        let snapshot: [u8; 32] = rand::random();
        Secrets {
            write_key: rand::random(),
            convergence: convergence.unwrap_or_else(rand::random),
            snapshot: Some(snapshot),
            snapshot_public: public_of(&snapshot),
        }
    }

    /// A write-only key for another machine: a write key of its own (so a
    /// server can revoke that machine alone), this key's convergence
    /// secret (its backups dedup with the owner's) and snapshot public
    /// key (it seals roots the owner opens), no snapshot secret.
    pub fn write_only_for_another_machine(&self) -> Secrets {
        Secrets {
            write_key: rand::random(),
            convergence: self.convergence,
            snapshot: None,
            snapshot_public: self.snapshot_public,
        }
    }

    /// Whether these are a write-only key's.
    pub fn is_write_only(&self) -> bool {
        self.snapshot.is_none()
    }

    /// The write key, for signing Tauth0.
    pub fn signing_key(&self) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&self.write_key)
    }

    /// The public write key line servers authorize.
    pub fn write_key_public(&self) -> String {
        let public = self.signing_key().verifying_key().to_bytes();
        eventi_shared::public_key::format(&public, "")
    }

    /// Hex of the X25519 public key snapshots are sealed to.
    pub fn snapshot_public(&self) -> String {
        hex::encode(self.snapshot_public)
    }

    fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut v = Zeroizing::new(Vec::with_capacity(SECRETS_LEN));
        match &self.snapshot {
            Some(snapshot) => {
                v.push(SECRETS_VERSION);
                v.extend_from_slice(&self.write_key);
                v.extend_from_slice(&self.convergence);
                v.extend_from_slice(snapshot);
            }
            None => {
                v.push(WRITE_ONLY_VERSION);
                v.extend_from_slice(&self.write_key);
                v.extend_from_slice(&self.convergence);
            }
        }
        v
    }

    /// The secrets of a sealed layout; a write-only one takes the owner's
    /// snapshot public key from the file's clear (authenticated) field.
    fn from_bytes(b: &[u8], snapshot_public: [u8; 32]) -> Option<Secrets> {
        let take = |i: usize| -> [u8; 32] {
            b[1 + 32 * i..1 + 32 * (i + 1)]
                .try_into()
                .expect("32 bytes")
        };
        match (b.first(), b.len()) {
            (Some(&SECRETS_VERSION), SECRETS_LEN) => {
                let snapshot = take(2);
                Some(Secrets {
                    write_key: take(0),
                    convergence: take(1),
                    snapshot: Some(snapshot),
                    snapshot_public: public_of(&snapshot),
                })
            }
            (Some(&WRITE_ONLY_VERSION), WRITE_ONLY_LEN) => Some(Secrets {
                write_key: take(0),
                convergence: take(1),
                snapshot: None,
                snapshot_public,
            }),
            _ => None,
        }
    }
}

fn public_of(snapshot: &[u8; 32]) -> [u8; 32] {
    let secret = x25519_dalek::StaticSecret::from(*snapshot);
    x25519_dalek::PublicKey::from(&secret).to_bytes()
}

/// Why a key file could not be used. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or writing the file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not a key file this version understands.
    #[error("key file {0} is not an eventi key file ({1})")]
    Format(String, String),
    /// The seal did not open.
    #[error("wrong passphrase for key file {0} (or the file is damaged)")]
    WrongPassphrase(String),
    /// Opened, but the public fields do not match the secrets.
    #[error("key file {0} is inconsistent: its public keys do not match its secrets")]
    Inconsistent(String),
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    algorithm: String,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    algorithm: String,
    nonce: String,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct File {
    format: String,
    /// `write-only` for a write-only key; absent for a full one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    write_key_public: String,
    snapshot_public: String,
    kdf: Kdf,
    sealed: Sealed,
}

fn derive_key(passphrase: &[u8], salt: &[u8], kdf: &Kdf) -> Result<Zeroizing<[u8; 32]>, String> {
    let params = Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(32))
        .map_err(|e| e.to_string())?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, salt, key.as_mut())
        .map_err(|e| e.to_string())?;
    Ok(key)
}

fn associated_data(kind: Option<&str>, write_key_public: &str, snapshot_public: &str) -> Vec<u8> {
    match kind {
        None => format!("{FORMAT}\n{write_key_public}\n{snapshot_public}\n"),
        Some(kind) => format!("{FORMAT}\n{kind}\n{write_key_public}\n{snapshot_public}\n"),
    }
    .into_bytes()
}

/// Seals `secrets` under `passphrase` as key file text.
pub fn seal(secrets: &Secrets, passphrase: &[u8]) -> String {
    let kdf = Kdf {
        algorithm: "argon2id".into(),
        memory_kib: KDF_MEMORY_KIB,
        iterations: KDF_ITERATIONS,
        parallelism: KDF_PARALLELISM,
        salt: hex::encode(rand::random::<[u8; 16]>()),
    };
    let salt = hex::decode(&kdf.salt).expect("hex we just wrote");
    let key = derive_key(passphrase, &salt, &kdf).expect("fixed, valid Argon2 parameters");
    let nonce: [u8; 24] = rand::random();
    let (wpub, spub) = (secrets.write_key_public(), secrets.snapshot_public());
    let kind = secrets.is_write_only().then(|| WRITE_ONLY.to_string());
    let plaintext = secrets.to_bytes();
    let ciphertext = XChaCha20Poly1305::new(key.as_ref().into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plaintext,
                aad: &associated_data(kind.as_deref(), &wpub, &spub),
            },
        )
        .expect("encryption of a small buffer cannot fail");
    let file = File {
        format: FORMAT.into(),
        kind,
        write_key_public: wpub,
        snapshot_public: spub,
        kdf,
        sealed: Sealed {
            algorithm: "xchacha20poly1305".into(),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        },
    };
    format!(
        "# eventi key file. Keep it private; without the passphrase it is useless.\n{}",
        toml::to_string(&file).expect("a key file serializes")
    )
}

fn parse(text: &str, name: &str) -> Result<File, KeyFileError> {
    let file: File =
        toml::from_str(text).map_err(|e| KeyFileError::Format(name.into(), e.to_string()))?;
    if file.format != FORMAT
        || file.kind.as_deref().is_some_and(|k| k != WRITE_ONLY)
        || file.kdf.algorithm != "argon2id"
        || file.sealed.algorithm != "xchacha20poly1305"
    {
        return Err(KeyFileError::Format(
            name.into(),
            format!("format {:?}", file.format),
        ));
    }
    Ok(file)
}

/// Opens key file text with `passphrase`. `name` is used in errors.
pub fn open(text: &str, passphrase: &[u8], name: &str) -> Result<Secrets, KeyFileError> {
    let file = parse(text, name)?;
    let bad = |what: &str| KeyFileError::Format(name.into(), what.into());
    let salt = hex::decode(&file.kdf.salt).map_err(|_| bad("bad salt"))?;
    let nonce = hex::decode(&file.sealed.nonce).map_err(|_| bad("bad nonce"))?;
    let ciphertext = hex::decode(&file.sealed.ciphertext).map_err(|_| bad("bad ciphertext"))?;
    if nonce.len() != 24 {
        return Err(bad("bad nonce length"));
    }
    let key = derive_key(passphrase, &salt, &file.kdf).map_err(|e| bad(&e))?;
    let plaintext = Zeroizing::new(
        XChaCha20Poly1305::new(key.as_ref().into())
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &associated_data(
                        file.kind.as_deref(),
                        &file.write_key_public,
                        &file.snapshot_public,
                    ),
                },
            )
            .map_err(|_| KeyFileError::WrongPassphrase(name.into()))?,
    );
    let mut snapshot_public = [0u8; 32];
    hex::decode_to_slice(&file.snapshot_public, &mut snapshot_public)
        .map_err(|_| bad("bad snapshot_public"))?;
    let secrets = Secrets::from_bytes(&plaintext, snapshot_public)
        .ok_or_else(|| bad("unknown secrets layout"))?;
    if secrets.is_write_only() != file.kind.is_some()
        || secrets.write_key_public() != file.write_key_public
        || secrets.snapshot_public() != file.snapshot_public
    {
        return Err(KeyFileError::Inconsistent(name.into()));
    }
    Ok(secrets)
}

/// Version byte of [`to_binary`]'s form.
const BINARY_VERSION: u8 = 1;

/// The key file as compact bytes, for the paper export: version[1]
/// memory_kib[4] iterations[4] parallelism[4] salt[16] nonce[24]
/// write_key_public[32] snapshot_public[32] ciphertext[rest]. Still
/// sealed: the passphrase is needed to use it. [`from_binary`] gives the
/// same key file back (its comment line aside).
pub fn to_binary(text: &str, name: &str) -> Result<Vec<u8>, KeyFileError> {
    let file = parse(text, name)?;
    let bad = |what: &str| KeyFileError::Format(name.into(), what.into());
    if file.kind.is_some() {
        return Err(bad("a write-only key is exported as a file, not on paper"));
    }
    let salt = hex::decode(&file.kdf.salt).map_err(|_| bad("bad salt"))?;
    let nonce = hex::decode(&file.sealed.nonce).map_err(|_| bad("bad nonce"))?;
    let ciphertext = hex::decode(&file.sealed.ciphertext).map_err(|_| bad("bad ciphertext"))?;
    let write = eventi_shared::public_key::parse(&file.write_key_public)
        .map_err(|_| bad("bad write_key_public"))?;
    let snapshot = hex::decode(&file.snapshot_public).map_err(|_| bad("bad snapshot_public"))?;
    if salt.len() != 16 || nonce.len() != 24 || snapshot.len() != 32 {
        return Err(bad("unexpected field lengths"));
    }
    let mut out = vec![BINARY_VERSION];
    for n in [
        file.kdf.memory_kib,
        file.kdf.iterations,
        file.kdf.parallelism,
    ] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    for part in [&salt[..], &nonce, &write, &snapshot, &ciphertext] {
        out.extend_from_slice(part);
    }
    Ok(out)
}

/// Key file text from [`to_binary`]'s bytes.
pub fn from_binary(bytes: &[u8], name: &str) -> Result<String, KeyFileError> {
    let bad = |what: &str| KeyFileError::Format(name.into(), what.into());
    const FIXED: usize = 1 + 12 + 16 + 24 + 32 + 32;
    if bytes.len() <= FIXED || bytes[0] != BINARY_VERSION {
        return Err(bad("not an exported eventi key"));
    }
    let n = |i: usize| u32::from_be_bytes(bytes[1 + 4 * i..5 + 4 * i].try_into().expect("4"));
    let (salt, rest) = bytes[13..].split_at(16);
    let (nonce, rest) = rest.split_at(24);
    let (write, rest) = rest.split_at(32);
    let (snapshot, ciphertext) = rest.split_at(32);
    let file = File {
        format: FORMAT.into(),
        kind: None,
        write_key_public: eventi_shared::public_key::format(write.try_into().expect("32"), ""),
        snapshot_public: hex::encode(snapshot),
        kdf: Kdf {
            algorithm: "argon2id".into(),
            memory_kib: n(0),
            iterations: n(1),
            parallelism: n(2),
            salt: hex::encode(salt),
        },
        sealed: Sealed {
            algorithm: "xchacha20poly1305".into(),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        },
    };
    Ok(format!(
        "# eventi key file. Keep it private; without the passphrase it is useless.\n{}",
        toml::to_string(&file).expect("a key file serializes")
    ))
}

/// The public write key line, readable without the passphrase.
pub fn public_write_key(text: &str, name: &str) -> Result<String, KeyFileError> {
    Ok(parse(text, name)?.write_key_public)
}

/// Whether key file text is a write-only key, readable without the
/// passphrase (so a command that needs to read snapshots refuses at once;
/// the seal's check of the same fact comes when the file is opened).
pub fn is_write_only(text: &str, name: &str) -> Result<bool, KeyFileError> {
    Ok(parse(text, name)?.kind.is_some())
}

/// Reads a key file.
pub fn read(path: &Path) -> Result<String, KeyFileError> {
    std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Writes a key file atomically (temp file, fsync, rename), mode 0600.
pub fn write(path: &Path, text: &str) -> Result<(), KeyFileError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| KeyFileError::Io {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_and_refuses_wrong_passphrases_and_tampering() {
        let s = Secrets::generate(None);
        let text = seal(&s, b"correct horse");
        let back = open(&text, b"correct horse", "k").unwrap();
        assert_eq!(back.write_key, s.write_key);
        assert_eq!(back.convergence, s.convergence);
        assert_eq!(back.snapshot, s.snapshot);
        assert_eq!(back.snapshot_public, s.snapshot_public);
        assert!(matches!(
            open(&text, b"wrong", "k"),
            Err(KeyFileError::WrongPassphrase(_))
        ));
        // Swapping the public write key is caught by the seal.
        let other = Secrets::generate(None).write_key_public();
        let swapped = text.replace(&s.write_key_public(), &other);
        assert!(matches!(
            open(&swapped, b"correct horse", "k"),
            Err(KeyFileError::WrongPassphrase(_))
        ));
        assert_eq!(public_write_key(&text, "k").unwrap(), s.write_key_public());
        // Secrets never print.
        assert_eq!(format!("{s:?}"), "Secrets([redacted])");
        assert!(!text.contains(&hex::encode(s.write_key)));
    }

    #[test]
    fn a_write_only_key_has_no_snapshot_secret_and_its_kind_is_sealed() {
        let owner = Secrets::generate(None);
        let machine = owner.write_only_for_another_machine();
        assert!(machine.is_write_only());
        assert_ne!(machine.write_key, owner.write_key);
        assert_eq!(machine.convergence, owner.convergence);
        assert_eq!(machine.snapshot_public(), owner.snapshot_public());
        let text = seal(&machine, b"machine pass");
        assert!(is_write_only(&text, "k").unwrap());
        assert!(!is_write_only(&seal(&owner, b"x"), "k").unwrap());
        assert!(!text.contains(&hex::encode(owner.snapshot.unwrap())));
        let back = open(&text, b"machine pass", "k").unwrap();
        assert!(back.is_write_only());
        assert_eq!(back.snapshot_public, owner.snapshot_public);
        assert_eq!(back.convergence, owner.convergence);
        // Dropping the kind (to pass it off as a full key) breaks the seal,
        // and so does another owner's snapshot key put in its place.
        let unkinded = text.replace("kind = \"write-only\"\n", "");
        assert_ne!(unkinded, text);
        assert!(open(&unkinded, b"machine pass", "k").is_err());
        let other = Secrets::generate(None).snapshot_public();
        let swapped = text.replace(&owner.snapshot_public(), &other);
        assert!(open(&swapped, b"machine pass", "k").is_err());
        assert!(to_binary(&text, "k").is_err(), "no paper form");
    }

    #[test]
    fn a_shared_convergence_secret_is_kept() {
        let s = Secrets::generate(Some([9; 32]));
        assert_eq!(s.convergence, [9; 32]);
    }
}
