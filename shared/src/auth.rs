//! Write-key authentication on venti's reserved Tauth0/Rauth0.
//!
//! A server that checks write keys puts a fresh random challenge in
//! Rhello's sid (`eventi-auth-v1:` and 64 hex digits); plain venti clients
//! ignore the sid and stay anonymous. A client with an Ed25519 write key
//! answers with Tauth0 carrying its public key and a signature over the
//! [`transcript`]: a domain-separation label, the challenge, the
//! negotiated version, the uid from Thello and the public key. The
//! challenge is new on every connection, so a signature cannot be replayed
//! on another connection or another server. Nothing secret crosses the
//! wire. The exact bytes are in `docs/PROTOCOL.md`.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// Bytes in a challenge.
pub const CHALLENGE_LEN: usize = 32;
/// What an authenticating server's sid starts with.
pub const SID_PREFIX: &str = "eventi-auth-v1:";
/// The label that starts every transcript, so a signature made for this
/// purpose can never be taken for one made for another.
pub const TRANSCRIPT_LABEL: &[u8] = b"eventi venti write-key auth v1\n";

/// The sid carrying `challenge`.
pub fn challenge_sid(challenge: &[u8; CHALLENGE_LEN]) -> String {
    format!("{SID_PREFIX}{}", hex::encode(challenge))
}

/// The challenge in an authenticating server's sid, or `None` for a
/// server that does not offer write-key authentication.
pub fn parse_challenge(sid: &str) -> Option<[u8; CHALLENGE_LEN]> {
    let mut out = [0u8; CHALLENGE_LEN];
    hex::decode_to_slice(sid.strip_prefix(SID_PREFIX)?, &mut out).ok()?;
    Some(out)
}

/// The bytes a write key signs: label, challenge, then version and uid as
/// venti strings (`len[2]` + bytes), then the 32-byte public key.
pub fn transcript(
    challenge: &[u8; CHALLENGE_LEN],
    version: &str,
    uid: &str,
    key: &[u8; 32],
) -> Vec<u8> {
    let mut t = Vec::with_capacity(
        TRANSCRIPT_LABEL.len() + CHALLENGE_LEN + 4 + version.len() + uid.len() + 32,
    );
    t.extend_from_slice(TRANSCRIPT_LABEL);
    t.extend_from_slice(challenge);
    for s in [version, uid] {
        t.extend_from_slice(&(s.len() as u16).to_be_bytes());
        t.extend_from_slice(s.as_bytes());
    }
    t.extend_from_slice(key);
    t
}

/// Signs the transcript for this session with `key`; returns the public
/// key and signature that go in Tauth0.
pub fn sign(
    key: &SigningKey,
    challenge: &[u8; CHALLENGE_LEN],
    version: &str,
    uid: &str,
) -> ([u8; 32], [u8; 64]) {
    let public = key.verifying_key().to_bytes();
    let signature = key.sign(&transcript(challenge, version, uid, &public));
    (public, signature.to_bytes())
}

/// Why a Tauth0 was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The bytes are not an Ed25519 public key.
    #[error("not a valid Ed25519 public key")]
    BadKey,
    /// The signature does not verify over this session's transcript.
    #[error("signature does not match this session")]
    BadSignature,
}

/// Checks a Tauth0 against this session's challenge, version and uid.
/// Uses dalek's strict verification (no malleable signatures, no
/// small-order keys).
pub fn verify(
    public: &[u8; 32],
    signature: &[u8; 64],
    challenge: &[u8; CHALLENGE_LEN],
    version: &str,
    uid: &str,
) -> Result<(), AuthError> {
    let key = VerifyingKey::from_bytes(public).map_err(|_| AuthError::BadKey)?;
    let sig = Signature::from_bytes(signature);
    key.verify_strict(&transcript(challenge, version, uid, public), &sig)
        .map_err(|_| AuthError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn sid_round_trips_and_plain_sids_carry_no_challenge() {
        let c = [7u8; CHALLENGE_LEN];
        assert_eq!(parse_challenge(&challenge_sid(&c)), Some(c));
        assert_eq!(parse_challenge("anonymous"), None);
        assert_eq!(parse_challenge("eventi-auth-v1:zz"), None);
    }

    #[test]
    fn transcript_bytes_are_pinned() {
        let t = transcript(&[1; 32], "04", "me", &[2; 32]);
        let mut want = TRANSCRIPT_LABEL.to_vec();
        want.extend_from_slice(&[1; 32]);
        want.extend_from_slice(&[0, 2, b'0', b'4', 0, 2, b'm', b'e']);
        want.extend_from_slice(&[2; 32]);
        assert_eq!(t, want);
    }

    #[test]
    fn a_signature_verifies_only_for_its_own_session() {
        let k = key(1);
        let c = [9u8; CHALLENGE_LEN];
        let (public, sig) = sign(&k, &c, "04", "alice");
        assert_eq!(verify(&public, &sig, &c, "04", "alice"), Ok(()));
        // Replayed on another connection (new challenge), another version,
        // another uid, or presented with another key: refused.
        assert_eq!(
            verify(&public, &sig, &[8u8; 32], "04", "alice"),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify(&public, &sig, &c, "02", "alice"),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify(&public, &sig, &c, "04", "mallory"),
            Err(AuthError::BadSignature)
        );
        let other = key(2).verifying_key().to_bytes();
        assert_eq!(
            verify(&other, &sig, &c, "04", "alice"),
            Err(AuthError::BadSignature)
        );
        let mut flipped = sig;
        flipped[10] ^= 1;
        assert_eq!(
            verify(&public, &flipped, &c, "04", "alice"),
            Err(AuthError::BadSignature)
        );
    }
}
