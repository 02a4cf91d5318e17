//! Scores: the SHA-1 of a block's bytes, which is its address.

use std::fmt;
use std::str::FromStr;

use sha1::{Digest, Sha1};

/// The 20-byte SHA-1 of a block; whoever knows it can ask for the block.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Score(pub [u8; Score::LEN]);

impl Score {
    /// Bytes in a score on the wire.
    pub const LEN: usize = 20;

    /// SHA-1 of the empty block; every venti server reads it as the empty
    /// block of any type without storing anything.
    pub const ZERO: Score = Score([
        0xda, 0x39, 0xa3, 0xee, 0x5e, 0x6b, 0x4b, 0x0d, 0x32, 0x55, 0xbf, 0xef, 0x95, 0x60, 0x18,
        0x90, 0xaf, 0xd8, 0x07, 0x09,
    ]);

    /// The score of `data`: its SHA-1 (SHA-NI accelerated where the CPU has it).
    pub fn of(data: &[u8]) -> Score {
        Score(Sha1::digest(data).into())
    }

    /// The score as raw bytes.
    pub fn as_bytes(&self) -> &[u8; Score::LEN] {
        &self.0
    }

    /// Reads a score from exactly 20 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Score> {
        bytes.try_into().ok().map(Score)
    }

    /// Whether this is the score of the empty block.
    pub fn is_zero(&self) -> bool {
        *self == Score::ZERO
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Score({self})")
    }
}

/// Why text did not parse as a score.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a score is 40 hexadecimal digits, got {0:?}")]
pub struct ParseScoreError(pub String);

impl FromStr for Score {
    type Err = ParseScoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; Score::LEN];
        // venti's tools accept an optional "label:" prefix, e.g. "vac:<hex>".
        let hex_part = s.rsplit(':').next().unwrap_or(s);
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| ParseScoreError(s.to_string()))?;
        Ok(Score(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_score_is_sha1_of_nothing() {
        assert_eq!(Score::of(b""), Score::ZERO);
        assert_eq!(
            Score::ZERO.to_string(),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
    }

    #[test]
    fn parses_plain_and_prefixed_hex() {
        let s: Score = "vac:da39a3ee5e6b4b0d3255bfef95601890afd80709"
            .parse()
            .unwrap();
        assert!(s.is_zero());
        assert!("da39".parse::<Score>().is_err());
        assert!("zz39a3ee5e6b4b0d3255bfef95601890afd80709"
            .parse::<Score>()
            .is_err());
    }

    #[test]
    fn known_sha1_vector() {
        assert_eq!(
            Score::of(b"abc").to_string(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }
}
