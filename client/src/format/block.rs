//! Encrypted blocks and the references that name them.
//!
//! Keyed convergent encryption (`docs/FORMAT.md`): a chunk's key is
//! HMAC-SHA-256 of its plaintext under the convergence secret, so the same
//! plaintext under the same secret always becomes the same block (dedup
//! across machines and snapshots), while without the secret nobody can
//! confirm a guessed plaintext. The block is XChaCha20-Poly1305 of the
//! plaintext under that key (a fixed nonce is safe: a key only ever
//! encrypts the one plaintext it was derived from).
//!
//! A [`Ref`] is `score[20] key[32] check[32]`: the venti address (SHA-1),
//! the key, and SHA-256 of the block. SHA-1 collisions are practical and a
//! Poly1305 tag can be forged by anyone who holds the key, so integrity
//! rests on `check`: 128-bit collision resistance even against a key holder.

use bytes::Bytes;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use eventi_shared::Score;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Label mixed into every chunk key.
const KEY_LABEL: &[u8] = b"eventi chunk key v1\0";
/// Associated data of every block.
const BLOCK_AAD: &[u8] = b"eventi block v1";
/// Bytes a block adds to its plaintext (the Poly1305 tag).
pub const BLOCK_OVERHEAD: usize = 16;

/// A reference to one encrypted block: where it is, how to open it, and
/// how to know it is the right one.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ref {
    /// Venti score (SHA-1) of the block: its address.
    pub score: Score,
    /// The block's key.
    pub key: [u8; 32],
    /// SHA-256 of the block.
    pub check: [u8; 32],
}

impl std::fmt::Debug for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A reference is a read capability: never print its key.
        write!(f, "Ref({})", self.score)
    }
}

impl Ref {
    /// Bytes in an encoded reference.
    pub const LEN: usize = 20 + 32 + 32;

    /// The reference's bytes.
    pub fn to_bytes(&self) -> [u8; Ref::LEN] {
        let mut b = [0u8; Ref::LEN];
        b[..20].copy_from_slice(self.score.as_bytes());
        b[20..52].copy_from_slice(&self.key);
        b[52..].copy_from_slice(&self.check);
        b
    }

    /// Parses an encoded reference.
    pub fn from_bytes(b: &[u8]) -> Option<Ref> {
        if b.len() != Ref::LEN {
            return None;
        }
        Some(Ref {
            score: Score::from_slice(&b[..20])?,
            key: b[20..52].try_into().ok()?,
            check: b[52..].try_into().ok()?,
        })
    }
}

/// Why a block could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlockError {
    /// The bytes are not the block the reference names.
    #[error("block {0} does not match its reference (SHA-256 differs): substituted or corrupt")]
    Mismatch(Score),
    /// Decryption failed although the hash matched (a bug, or a forged reference).
    #[error("block {0} does not decrypt with its reference's key")]
    Undecryptable(Score),
}

/// Seals a plaintext: returns the block to store and its reference.
pub fn seal(convergence: &[u8; 32], plaintext: &[u8]) -> (Bytes, Ref) {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(convergence).expect("HMAC takes any key length");
    mac.update(KEY_LABEL);
    mac.update(plaintext);
    let key: [u8; 32] = mac.finalize().into_bytes().into();
    let block = XChaCha20Poly1305::new((&key).into())
        .encrypt(
            XNonce::from_slice(&[0u8; 24]),
            Payload {
                msg: plaintext,
                aad: BLOCK_AAD,
            },
        )
        .expect("encryption cannot fail");
    let r = Ref {
        score: Score::of(&block),
        key,
        check: Sha256::digest(&block).into(),
    };
    (Bytes::from(block), r)
}

/// Opens a block fetched by `r.score`, after checking it is the block `r`
/// names.
pub fn open(r: &Ref, block: &[u8]) -> Result<Vec<u8>, BlockError> {
    let check: [u8; 32] = Sha256::digest(block).into();
    if check != r.check {
        return Err(BlockError::Mismatch(r.score));
    }
    decrypt_checked(r, block)
}

/// [`open`] of a block whose SHA-256 the caller has already checked
/// against `r.check` (a store's `get_checked`): only decrypts.
pub fn decrypt_checked(r: &Ref, block: &[u8]) -> Result<Vec<u8>, BlockError> {
    XChaCha20Poly1305::new((&r.key).into())
        .decrypt(
            XNonce::from_slice(&[0u8; 24]),
            Payload {
                msg: block,
                aad: BLOCK_AAD,
            },
        )
        .map_err(|_| BlockError::Undecryptable(r.score))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [7; 32];

    #[test]
    fn convergent_round_trip() {
        let (block, r) = seal(&SECRET, b"hello, venti");
        assert_eq!(block.len(), 12 + BLOCK_OVERHEAD);
        assert_eq!(open(&r, &block).unwrap(), b"hello, venti");
        // Same plaintext, same secret: the same block (dedup).
        assert_eq!(seal(&SECRET, b"hello, venti"), (block.clone(), r));
        // Another secret: an unrelated block (no confirmation of guesses).
        let (other, r2) = seal(&[8; 32], b"hello, venti");
        assert_ne!(other, block);
        assert_ne!(r2.score, r.score);
        assert_eq!(Ref::from_bytes(&r.to_bytes()), Some(r));
        assert!(
            !format!("{r:?}").contains(&hex::encode(r.key)),
            "Debug must not leak the key"
        );
    }

    #[test]
    fn a_key_holder_cannot_substitute_a_block() {
        let (block, r) = seal(&SECRET, b"the real data");
        // Someone holding r.key can make another valid ciphertext...
        let forged = XChaCha20Poly1305::new((&r.key).into())
            .encrypt(
                XNonce::from_slice(&[0u8; 24]),
                Payload {
                    msg: &b"evil data!!!!"[..],
                    aad: BLOCK_AAD,
                },
            )
            .unwrap();
        // ...but not one with the reference's SHA-256.
        assert_eq!(open(&r, &forged), Err(BlockError::Mismatch(r.score)));
        let mut flipped = block.to_vec();
        flipped[0] ^= 1;
        assert_eq!(open(&r, &flipped), Err(BlockError::Mismatch(r.score)));
    }

    /// Pins the format: a block written today must open with every later
    /// version. Do not change these bytes; add a new format version instead.
    #[test]
    fn golden_vector() {
        let (block, r) = seal(&SECRET, b"eventi golden vector 1");
        assert_eq!(
            hex::encode(&block),
            GOLDEN_BLOCK,
            "the block format changed: that breaks every existing backup"
        );
        assert_eq!(hex::encode(r.to_bytes()), GOLDEN_REF);
        assert_eq!(
            open(&r, &hex::decode(GOLDEN_BLOCK).unwrap()).unwrap(),
            b"eventi golden vector 1"
        );
    }

    // Computed independently (Python hmac/hashlib and pycryptodome's
    // XChaCha20-Poly1305), not by this code.
    const GOLDEN_BLOCK: &str =
        "a47daddb87b25d40125f07c0cdb4d2837b54e6b5c54705f57c786d6b1f782bc59191ca9175e4";
    const GOLDEN_REF: &str = "98defbe0fa089dd963c3ea3f337c4d0f629d74da24879949585af9f6b64033915c3ff5b86464f0ff60c5acdbc2ba4d63258b10cc099216cbfb1416acbf248aa0532c0a8a02a4df34ead1680b13da887e5bcf1c01";
}
