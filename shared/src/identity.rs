//! How a server's identity (the X25519 public key that eventi-server
//! makes on first start, for the encrypted sessions of issue 14) is
//! written: the line `eventi-x25519 <64 hex digits> [comment]` that
//! `eventi-server identity` prints and a friend pins, and the
//! fingerprint people compare by voice. Pure; bytes in `docs/FORMAT.md`.

use sha2::{Digest, Sha256};

/// The word that starts an identity line.
pub const PREFIX: &str = "eventi-x25519";

/// A line that is not a server identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a server identity: expected \"{PREFIX} <64 hex digits> [comment]\"")]
pub struct NotAnIdentity;

/// Parses `eventi-x25519 <64 hex digits> [comment]`: the key's 32 bytes.
/// The prefix is required (a bare hex key could be a write key).
pub fn parse(text: &str) -> Result<[u8; 32], NotAnIdentity> {
    let mut words = text.split_whitespace();
    if words.next() != Some(PREFIX) {
        return Err(NotAnIdentity);
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(words.next().ok_or(NotAnIdentity)?, &mut out)
        .map_err(|_| NotAnIdentity)?;
    // The all-zero key (and other low-order points) agree on a shared
    // secret with nobody: no server has one.
    if out == [0; 32] {
        return Err(NotAnIdentity);
    }
    Ok(out)
}

/// The line for `public`, with `comment` after it if not empty.
pub fn format(public: &[u8; 32], comment: &str) -> String {
    crate::public_key::key_line(PREFIX, public, comment)
}

/// The fingerprint to read out and compare: `SHA256:` and the first 16
/// bytes of SHA-256 of the key, as 8 groups of 4 hex digits (128 bits:
/// no second key with the same fingerprint can be found).
pub fn fingerprint(public: &[u8; 32]) -> String {
    let digest = Sha256::digest(public);
    let groups: Vec<String> = digest[..16].chunks(2).map(hex::encode).collect();
    format!("SHA256:{}", groups.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned in docs/FORMAT.md: the X25519 public key of secret [7; 32].
    #[test]
    fn lines_and_fingerprints_are_pinned() {
        let public = GOLDEN_PUBLIC;
        let mut key = [0u8; 32];
        hex::decode_to_slice(public, &mut key).unwrap();
        let line = format(&key, "alice's server");
        assert_eq!(line, format!("eventi-x25519 {public} alice's server"));
        assert_eq!(parse(&line), Ok(key));
        assert_eq!(fingerprint(&key), GOLDEN_FINGERPRINT);
        for bad in [
            "",
            public,
            "eventi-ed25519 ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c",
            "eventi-x25519 abcd",
            "eventi-x25519 0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert_eq!(parse(bad), Err(NotAnIdentity), "{bad:?}");
        }
    }

    // X25519(secret = 32 bytes of 7, basepoint) and SHA-256 of it,
    // computed with Python's `cryptography` and `hashlib`.
    const GOLDEN_PUBLIC: &str = "13be4feaeaf204c7fd3358fc9c00721881d174278128227ec674f37f7fe97b6d";
    const GOLDEN_FINGERPRINT: &str = "SHA256:0f6d:2553:ff0c:0f44:7ae2:02ed:d843:83e1";
}
