//! How a write key's public half is written, the one line a friend pastes
//! into `eventi-server keys add`: `eventi-ed25519 <64 hex digits>
//! [comment]`. Pure; both binaries read and write it here.

/// The word that starts a public key line.
pub const PREFIX: &str = "eventi-ed25519";

/// A line that is not a public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a public key: expected \"{PREFIX} <64 hex digits> [comment]\"")]
pub struct NotAPublicKey;

/// Parses `eventi-ed25519 <64 hex digits> [comment]` (or the bare hex):
/// the key's 32 bytes, checked to be a valid Ed25519 point.
pub fn parse(text: &str) -> Result<[u8; 32], NotAPublicKey> {
    let mut words = text.split_whitespace();
    let first = words.next().ok_or(NotAPublicKey)?;
    let hex_part = if first == PREFIX {
        words.next().ok_or(NotAPublicKey)?
    } else {
        first
    };
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).map_err(|_| NotAPublicKey)?;
    ed25519_dalek::VerifyingKey::from_bytes(&out).map_err(|_| NotAPublicKey)?;
    Ok(out)
}

/// The line for `public`, with `comment` after it if not empty.
pub fn format(public: &[u8; 32], comment: &str) -> String {
    key_line(PREFIX, public, comment)
}

/// `PREFIX <64 hex digits> [comment]`: how every public key line is
/// written (write keys here, server identities in `identity`).
pub(crate) fn key_line(prefix: &str, public: &[u8; 32], comment: &str) -> String {
    let line = format!("{prefix} {}", hex::encode(public));
    if comment.is_empty() {
        line
    } else {
        format!("{line} {comment}")
    }
}

/// A short fingerprint for listings and logs (never the key itself):
/// `ed25519:` and the first 16 hex digits of the SHA-1 of the key's hex.
pub fn fingerprint(public: &[u8; 32]) -> String {
    fingerprint_of_hex(&hex::encode(public))
}

/// [`fingerprint`] of a key already written as hex.
pub fn fingerprint_of_hex(public_hex: &str) -> String {
    let score = crate::Score::of(public_hex.as_bytes());
    format!("ed25519:{}", &score.to_string()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned in docs/FORMAT.md: the key of secret [7; 32].
    #[test]
    fn lines_round_trip_and_are_pinned() {
        let public = ed25519_dalek::SigningKey::from_bytes(&[7; 32])
            .verifying_key()
            .to_bytes();
        let line = format(&public, "laptop");
        assert_eq!(
            line,
            "eventi-ed25519 ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c laptop"
        );
        assert_eq!(parse(&line), Ok(public));
        assert_eq!(parse(&hex::encode(public)), Ok(public));
        assert_eq!(
            fingerprint(&public),
            fingerprint_of_hex(&hex::encode(public))
        );
        assert!(fingerprint(&public).starts_with("ed25519:"));
        for bad in [
            "",
            "eventi-ed25519",
            "eventi-ed25519 abcd",
            "ssh-ed25519 AAAA",
        ] {
            assert_eq!(parse(bad), Err(NotAPublicKey), "{bad:?}");
        }
    }
}
