//! The envelope of snapshot roots and history records: a body sealed to
//! the owner's X25519 public key and, inside the seal, signed with the
//! Ed25519 write key of the machine that made it. Whoever holds only the
//! public half can seal (write) but not open (read); a reader learns which
//! key signed.
//!
//! ```text
//! magic ephemeral_public[32] nonce[24] XChaCha20-Poly1305(sealed)
//! key    = HMAC-SHA-256(X25519(ephemeral, owner), seal_label || ephemeral_public || owner_public)
//! aad    = magic || ephemeral_public || owner_public
//! sealed = body_len[4] body signer[32] signature[64]
//! signature = Ed25519(signer, sign_label || owner_public || body)
//! ```
//!
//! Each kind of block has its own magic and labels ([`Kind`]), so a
//! signature or seal made for one kind never passes for another.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

/// The magic and domain-separation labels of one kind of sealed block.
pub struct Kind {
    /// The block's first bytes.
    pub magic: &'static [u8],
    /// Label of the sealing key's derivation.
    pub seal_label: &'static [u8],
    /// Label of the signed transcript.
    pub sign_label: &'static [u8],
}

/// Why a sealed block did not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    /// The block does not start with this kind's magic.
    #[error("not this kind of block")]
    OtherKind,
    /// Sealed to another key, or damaged.
    #[error("does not open with this key (sealed to another key, or damaged)")]
    Sealed,
    /// Opened, but the signature part is malformed or does not verify.
    #[error("{0}")]
    Malformed(&'static str),
}

const HEADER: usize = 32 + 24;

impl Kind {
    /// Whether `block` starts with this kind's magic.
    pub fn is_kind(&self, block: &[u8]) -> bool {
        block.starts_with(self.magic)
    }

    fn key(&self, shared: &[u8; 32], ephemeral: &[u8; 32], owner: &[u8; 32]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(shared).expect("any key length");
        mac.update(self.seal_label);
        mac.update(ephemeral);
        mac.update(owner);
        mac.finalize().into_bytes().into()
    }

    fn aad(&self, ephemeral: &[u8; 32], owner: &[u8; 32]) -> Vec<u8> {
        [self.magic, ephemeral, owner].concat()
    }

    /// Seals and signs `body` with a fresh ephemeral key and nonce.
    pub fn seal(&self, body: &[u8], owner: &PublicKey, signer: &SigningKey) -> Vec<u8> {
        self.seal_with(
            body,
            owner,
            signer,
            StaticSecret::from(rand::random::<[u8; 32]>()),
            rand::random(),
        )
    }

    /// [`Kind::seal`] with a given ephemeral secret and nonce (golden
    /// vectors).
    pub fn seal_with(
        &self,
        body: &[u8],
        owner: &PublicKey,
        signer: &SigningKey,
        ephemeral: StaticSecret,
        nonce: [u8; 24],
    ) -> Vec<u8> {
        let ephemeral_public = PublicKey::from(&ephemeral).to_bytes();
        let shared = ephemeral.diffie_hellman(owner);
        let key = self.key(shared.as_bytes(), &ephemeral_public, owner.as_bytes());
        let signed = [self.sign_label, owner.as_bytes(), body].concat();
        let signature = signer.sign(&signed);
        let mut plain = Vec::with_capacity(4 + body.len() + 96);
        plain.extend_from_slice(&(body.len() as u32).to_be_bytes());
        plain.extend_from_slice(body);
        plain.extend_from_slice(signer.verifying_key().as_bytes());
        plain.extend_from_slice(&signature.to_bytes());
        let sealed = XChaCha20Poly1305::new((&key).into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &self.aad(&ephemeral_public, owner.as_bytes()),
                },
            )
            .expect("encryption cannot fail");
        [self.magic, &ephemeral_public, &nonce, &sealed].concat()
    }

    /// Opens a block with the owner's secret; returns the body and the
    /// public key whose signature over it verified (strict Ed25519).
    pub fn open(
        &self,
        block: &[u8],
        owner: &StaticSecret,
    ) -> Result<(Vec<u8>, VerifyingKey), OpenError> {
        if block.len() < self.magic.len() + HEADER + 16 || !self.is_kind(block) {
            return Err(OpenError::OtherKind);
        }
        let rest = &block[self.magic.len()..];
        let ephemeral_public: [u8; 32] = rest[..32].try_into().expect("32");
        let nonce = &rest[32..HEADER];
        let owner_public = PublicKey::from(owner).to_bytes();
        let shared = owner.diffie_hellman(&PublicKey::from(ephemeral_public));
        if !shared.was_contributory() {
            return Err(OpenError::Sealed);
        }
        let key = self.key(shared.as_bytes(), &ephemeral_public, &owner_public);
        let plain = XChaCha20Poly1305::new((&key).into())
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: &rest[HEADER..],
                    aad: &self.aad(&ephemeral_public, &owner_public),
                },
            )
            .map_err(|_| OpenError::Sealed)?;
        let len = u32::from_be_bytes(
            plain
                .get(..4)
                .ok_or(OpenError::Malformed("truncated"))?
                .try_into()
                .expect("4"),
        ) as usize;
        let body = plain
            .get(4..4 + len)
            .ok_or(OpenError::Malformed("truncated"))?;
        let tail = &plain[4 + len..];
        if tail.len() != 96 {
            return Err(OpenError::Malformed("bad signature block"));
        }
        let signer = VerifyingKey::from_bytes(tail[..32].try_into().expect("32"))
            .map_err(|_| OpenError::Malformed("bad signer key"))?;
        let signature = ed25519_dalek::Signature::from_bytes(tail[32..].try_into().expect("64"));
        let signed = [self.sign_label, &owner_public, body].concat();
        signer
            .verify_strict(&signed, &signature)
            .map_err(|_| OpenError::Malformed("signature does not verify"))?;
        Ok((body.to_vec(), signer))
    }
}
