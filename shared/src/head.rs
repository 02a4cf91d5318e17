//! Heads kept on the server: per write key, a few named pointers to the
//! newest snapshot root, each with a sequence number and the key's
//! Ed25519 signature, so that a machine that lost everything but its key
//! finds its snapshots again. The server checks the signature before it
//! stores one and never makes one itself: it can withhold a head or serve
//! an old one, never forge one. Bytes in `docs/PROTOCOL.md`.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::score::Score;

/// The label that starts every head transcript (domain separation from
/// the auth transcript and everything else the key signs).
pub const HEAD_LABEL: &[u8] = b"eventi head v1\n";
/// Longest head name.
pub const MAX_NAME: usize = 64;
/// Most heads one key may keep on a server.
pub const MAX_HEADS_PER_KEY: usize = 16;
/// Bytes of a stored or transmitted head: root[20] seq[8] signature[64].
pub const HEAD_LEN: usize = Score::LEN + 8 + 64;

/// A head as it travels and is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedHead {
    /// The newest snapshot root.
    pub root: Score,
    /// Grows by one with every new head; the server keeps the highest.
    pub seq: u64,
    /// The key's signature over [`transcript`].
    pub signature: [u8; 64],
}

impl SignedHead {
    /// `root[20] seq[8] signature[64]`.
    pub fn to_bytes(&self) -> [u8; HEAD_LEN] {
        let mut b = [0u8; HEAD_LEN];
        b[..20].copy_from_slice(self.root.as_bytes());
        b[20..28].copy_from_slice(&self.seq.to_be_bytes());
        b[28..].copy_from_slice(&self.signature);
        b
    }

    /// Parses [`SignedHead::to_bytes`]'s form.
    pub fn from_bytes(b: &[u8]) -> Option<SignedHead> {
        if b.len() != HEAD_LEN {
            return None;
        }
        Some(SignedHead {
            root: Score::from_slice(&b[..20])?,
            seq: u64::from_be_bytes(b[20..28].try_into().ok()?),
            signature: b[28..].try_into().ok()?,
        })
    }
}

/// Whether `name` may name a head: 1 to 64 bytes of `A-Z a-z 0-9 . _ -`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What a head's signature covers: label, the public key, the name as a
/// venti string (`len[2]` + bytes), the root and the sequence number.
pub fn transcript(key: &[u8; 32], name: &str, root: &Score, seq: u64) -> Vec<u8> {
    let mut t = Vec::with_capacity(HEAD_LABEL.len() + 32 + 2 + name.len() + 28);
    t.extend_from_slice(HEAD_LABEL);
    t.extend_from_slice(key);
    t.extend_from_slice(&(name.len() as u16).to_be_bytes());
    t.extend_from_slice(name.as_bytes());
    t.extend_from_slice(root.as_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t
}

/// Signs head `name` → `root` at `seq` with `key`.
pub fn sign(key: &SigningKey, name: &str, root: Score, seq: u64) -> SignedHead {
    let public = key.verifying_key().to_bytes();
    let signature = key.sign(&transcript(&public, name, &root, seq)).to_bytes();
    SignedHead {
        root,
        seq,
        signature,
    }
}

/// Whether `head` is `key`'s signed head `name` (strict verification).
pub fn verify(key: &[u8; 32], name: &str, head: &SignedHead) -> bool {
    let Ok(public) = VerifyingKey::from_bytes(key) else {
        return false;
    };
    let signature = Signature::from_bytes(&head.signature);
    public
        .verify_strict(&transcript(key, name, &head.root, head.seq), &signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned: a head signed with the secret [7; 32], name "default",
    /// root SHA-1("abc"), seq 2.
    #[test]
    fn golden_head_signature_and_bytes() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let root: Score = "a9993e364706816aba3e25717850c26c9cd0d89d".parse().unwrap();
        let head = sign(&key, "default", root, 2);
        let public = key.verifying_key().to_bytes();
        let t = transcript(&public, "default", &root, 2);
        assert_eq!(t.len(), 15 + 32 + 2 + 7 + 20 + 8);
        assert_eq!(&t[..15], b"eventi head v1\n");
        assert_eq!(
            hex::encode(head.signature),
            GOLDEN_SIGNATURE,
            "Ed25519 is deterministic: this pins the transcript"
        );
        assert!(verify(&public, "default", &head));
        assert!(!verify(&public, "other", &head), "the name is signed");
        let older = SignedHead { seq: 1, ..head };
        assert!(
            !verify(&public, "default", &older),
            "the sequence is signed"
        );
        assert_eq!(SignedHead::from_bytes(&head.to_bytes()), Some(head));
        assert_eq!(SignedHead::from_bytes(&[0; 10]), None);
    }

    const GOLDEN_SIGNATURE: &str = "0a5469bbd0159448ff78c21d34ca046d0865ab011c9d7f15907d2908ff7d9ed0623dcfe72d94e008a38c4030bd9b3d264dcebdaec92c4b6432a0828b85ed350e";

    #[test]
    fn names_are_short_and_plain() {
        assert!(valid_name("default"));
        assert!(valid_name("laptop-2.home_x"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"x".repeat(65)));
    }
}
