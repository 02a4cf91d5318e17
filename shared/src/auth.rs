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
//!
//! In an encrypted session (`session.rs`) the transcript also binds the
//! Noise handshake hash ([`BOUND_LABEL`]): a relay that ends the client's
//! session and opens its own to another server holds two sessions with
//! two hashes, so the server's challenge passed through is signed for the
//! wrong one and refused.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// Bytes in a challenge.
pub const CHALLENGE_LEN: usize = 32;
/// What an authenticating server's sid starts with.
pub const SID_PREFIX: &str = "eventi-auth-v1:";
/// The label that starts every transcript, so a signature made for this
/// purpose can never be taken for one made for another.
pub const TRANSCRIPT_LABEL: &[u8] = b"eventi venti write-key auth v1\n";
/// The label of a transcript bound to an encrypted session's handshake.
pub const BOUND_LABEL: &[u8] = b"eventi venti write-key auth v2 (bound)\n";
/// Bytes of a session binding (the Noise handshake hash).
pub const BINDING_LEN: usize = 32;

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
/// venti strings (`len[2]` + bytes), then the 32-byte public key; in an
/// encrypted session ([`BOUND_LABEL`]) then the handshake hash.
pub fn transcript(
    challenge: &[u8; CHALLENGE_LEN],
    version: &str,
    uid: &str,
    key: &[u8; 32],
    binding: Option<&[u8; BINDING_LEN]>,
) -> Vec<u8> {
    let mut t = Vec::with_capacity(
        BOUND_LABEL.len() + CHALLENGE_LEN + 4 + version.len() + uid.len() + 32 + BINDING_LEN,
    );
    t.extend_from_slice(if binding.is_some() {
        BOUND_LABEL
    } else {
        TRANSCRIPT_LABEL
    });
    t.extend_from_slice(challenge);
    for s in [version, uid] {
        t.extend_from_slice(&(s.len() as u16).to_be_bytes());
        t.extend_from_slice(s.as_bytes());
    }
    t.extend_from_slice(key);
    if let Some(b) = binding {
        t.extend_from_slice(b);
    }
    t
}

/// Signs the transcript for this session with `key` (bound to the
/// encrypted session's handshake hash, if any); returns the public key
/// and signature that go in Tauth0.
pub fn sign(
    key: &SigningKey,
    challenge: &[u8; CHALLENGE_LEN],
    version: &str,
    uid: &str,
    binding: Option<&[u8; BINDING_LEN]>,
) -> ([u8; 32], [u8; 64]) {
    let public = key.verifying_key().to_bytes();
    let signature = key.sign(&transcript(challenge, version, uid, &public, binding));
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

/// Checks a Tauth0 against this session's challenge, version, uid and
/// binding. Uses dalek's strict verification (no malleable signatures,
/// no small-order keys).
pub fn verify(
    public: &[u8; 32],
    signature: &[u8; 64],
    challenge: &[u8; CHALLENGE_LEN],
    version: &str,
    uid: &str,
    binding: Option<&[u8; BINDING_LEN]>,
) -> Result<(), AuthError> {
    let key = VerifyingKey::from_bytes(public).map_err(|_| AuthError::BadKey)?;
    let sig = Signature::from_bytes(signature);
    key.verify_strict(&transcript(challenge, version, uid, public, binding), &sig)
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
        let t = transcript(&[1; 32], "04", "me", &[2; 32], None);
        let mut want = TRANSCRIPT_LABEL.to_vec();
        want.extend_from_slice(&[1; 32]);
        want.extend_from_slice(&[0, 2, b'0', b'4', 0, 2, b'm', b'e']);
        want.extend_from_slice(&[2; 32]);
        assert_eq!(t, want);
        let bound = transcript(&[1; 32], "04", "me", &[2; 32], Some(&[3; 32]));
        let mut want_bound = BOUND_LABEL.to_vec();
        want_bound.extend_from_slice(&want[TRANSCRIPT_LABEL.len()..]);
        want_bound.extend_from_slice(&[3; 32]);
        assert_eq!(bound, want_bound);
    }

    #[test]
    fn a_signature_verifies_only_for_its_own_session() {
        let k = key(1);
        let c = [9u8; CHALLENGE_LEN];
        let (public, sig) = sign(&k, &c, "04", "alice", None);
        assert_eq!(verify(&public, &sig, &c, "04", "alice", None), Ok(()));
        // Bound to one encrypted session: refused in another, or in clear.
        let (_, bound) = sign(&k, &c, "04", "alice", Some(&[5; 32]));
        assert_eq!(
            verify(&public, &bound, &c, "04", "alice", Some(&[5; 32])),
            Ok(())
        );
        assert_eq!(
            verify(&public, &bound, &c, "04", "alice", Some(&[6; 32])),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify(&public, &bound, &c, "04", "alice", None),
            Err(AuthError::BadSignature)
        );
        // Replayed on another connection (new challenge), another version,
        // another uid, or presented with another key: refused.
        assert_eq!(
            verify(&public, &sig, &[8u8; 32], "04", "alice", None),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify(&public, &sig, &c, "02", "alice", None),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify(&public, &sig, &c, "04", "mallory", None),
            Err(AuthError::BadSignature)
        );
        let other = key(2).verifying_key().to_bytes();
        assert_eq!(
            verify(&other, &sig, &c, "04", "alice", None),
            Err(AuthError::BadSignature)
        );
        let mut flipped = sig;
        flipped[10] ^= 1;
        assert_eq!(
            verify(&public, &flipped, &c, "04", "alice", None),
            Err(AuthError::BadSignature)
        );
    }
}
