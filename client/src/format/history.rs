//! History records: what `eventi forget` puts at the head of a chain so
//! that the snapshots it removed drop out of it for good, while every
//! kept one stays reachable from the head and no server can shorten the
//! history without the owner's signature.
//!
//! A record lists the kept snapshots' root scores, newest first. A reader
//! walking the chain from the head follows parent links as before; when
//! it meets a record (a snapshot made after a forget has the record as its
//! parent), it takes the record's list as the rest of the chain and stops
//! following links: the kept roots still name their old parents, which
//! may be gone. The record is sealed to the owner and signed by the write
//! key, in the same envelope as roots (`sealed.rs`), with its own magic
//! and labels, and the head that points at it has a higher sequence than
//! the one it replaced, so an older head served instead is noticed.
//!
//! ```text
//! body = version[1]=1 time_ns[8] has_replaces[1] replaces[20]?
//!        forgotten[8] policy[s16] count[4] {root[20]}*
//! ```
//!
//! Readers skip body bytes after the fields they know.

use ed25519_dalek::{SigningKey, VerifyingKey};
use eventi_shared::Score;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::format::sealed::{self, OpenError};

/// First bytes of every history record.
pub const MAGIC: &[u8; 17] = b"eventi history 1\n";
/// The envelope of history records.
pub const KIND: sealed::Kind = sealed::Kind {
    magic: MAGIC,
    seal_label: b"eventi history seal v1\0",
    sign_label: b"eventi history signature v1\0",
};
const BODY_VERSION: u8 = 1;
/// The most roots one record lists: at 20 bytes a root, its block stays
/// under venti's 56 KiB block limit.
pub const MAX_KEPT: usize = 2_500;

/// A history record's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    /// The kept snapshots' root scores, newest first: with the snapshots
    /// made after the record (whose parent links lead to it), all the
    /// chain holds.
    pub kept: Vec<Score>,
    /// When `forget` ran, ns since the epoch.
    pub time_ns: i64,
    /// The head block this record replaced (a root, or an older record),
    /// for the record's reader; it may have been reclaimed since.
    pub replaces: Option<Score>,
    /// How many snapshots were forgotten, by this record and the ones
    /// before it.
    pub forgotten: u64,
    /// What was asked, as `forget` printed it ("keep 2 last", or the
    /// snapshots named).
    pub policy: String,
}

/// Why a record did not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HistoryError {
    /// Not a history record at all.
    #[error("block {0} is not an eventi history record")]
    NotARecord(Score),
    /// Sealed to another key, or damaged.
    #[error(
        "history record {0} does not open with this key file (sealed to another key, or damaged)"
    )]
    Sealed(Score),
    /// Opened but malformed or badly signed.
    #[error("history record {0} is malformed: {1}")]
    Malformed(Score, &'static str),
    /// Too many roots for one block.
    #[error("a history record lists at most {MAX_KEPT} snapshots; forget more first")]
    TooMany,
}

impl History {
    fn encode_body(&self) -> Vec<u8> {
        let mut b = vec![BODY_VERSION];
        b.extend_from_slice(&self.time_ns.to_be_bytes());
        match self.replaces {
            Some(s) => {
                b.push(1);
                b.extend_from_slice(s.as_bytes());
            }
            None => b.push(0),
        }
        b.extend_from_slice(&self.forgotten.to_be_bytes());
        let policy = &self.policy.as_bytes()[..self.policy.len().min(u16::MAX as usize)];
        b.extend_from_slice(&(policy.len() as u16).to_be_bytes());
        b.extend_from_slice(policy);
        b.extend_from_slice(&(self.kept.len() as u32).to_be_bytes());
        for s in &self.kept {
            b.extend_from_slice(s.as_bytes());
        }
        b
    }

    fn decode_body(score: Score, b: &[u8]) -> Result<History, HistoryError> {
        let bad = |why| HistoryError::Malformed(score, why);
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], HistoryError> {
            let s = b.get(at..at + n).ok_or(bad("truncated"))?;
            at += n;
            Ok(s)
        };
        if take(1)?[0] != BODY_VERSION {
            return Err(bad("unknown version"));
        }
        let time_ns = i64::from_be_bytes(take(8)?.try_into().expect("8"));
        let replaces = match take(1)?[0] {
            0 => None,
            1 => Some(Score::from_slice(take(20)?).ok_or(bad("bad score"))?),
            _ => return Err(bad("bad flag")),
        };
        let forgotten = u64::from_be_bytes(take(8)?.try_into().expect("8"));
        let n = u16::from_be_bytes(take(2)?.try_into().expect("2")) as usize;
        let policy = String::from_utf8(take(n)?.to_vec()).map_err(|_| bad("policy not UTF-8"))?;
        let count = u32::from_be_bytes(take(4)?.try_into().expect("4")) as usize;
        if count > MAX_KEPT {
            return Err(bad("too many roots"));
        }
        let mut kept = Vec::with_capacity(count);
        for _ in 0..count {
            kept.push(Score::from_slice(take(20)?).ok_or(bad("bad score"))?);
        }
        Ok(History {
            kept,
            time_ns,
            replaces,
            forgotten,
            policy,
        })
    }

    /// Seals the record to `owner` and signs it with `signer`: the block
    /// to store.
    pub fn seal(&self, owner: &PublicKey, signer: &SigningKey) -> Result<Vec<u8>, HistoryError> {
        if self.kept.len() > MAX_KEPT {
            return Err(HistoryError::TooMany);
        }
        Ok(KIND.seal(&self.encode_body(), owner, signer))
    }

    /// [`History::seal`] with a given ephemeral secret and nonce (golden
    /// vectors).
    pub fn seal_with(
        &self,
        owner: &PublicKey,
        signer: &SigningKey,
        ephemeral: StaticSecret,
        nonce: [u8; 24],
    ) -> Vec<u8> {
        KIND.seal_with(&self.encode_body(), owner, signer, ephemeral, nonce)
    }

    /// Opens a record with the owner's secret; returns it and the public
    /// key that signed it.
    pub fn open(
        score: Score,
        block: &[u8],
        owner: &StaticSecret,
    ) -> Result<(History, VerifyingKey), HistoryError> {
        let (body, signer) = KIND.open(block, owner).map_err(|e| match e {
            OpenError::OtherKind => HistoryError::NotARecord(score),
            OpenError::Sealed => HistoryError::Sealed(score),
            OpenError::Malformed(why) => HistoryError::Malformed(score, why),
        })?;
        Ok((History::decode_body(score, &body)?, signer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> History {
        History {
            kept: vec![Score::of(b"newest kept"), Score::of(b"oldest kept")],
            time_ns: 1_764_000_000_000_000_000,
            replaces: Some(Score::of(b"the old head")),
            forgotten: 7,
            policy: "keep 2 last".into(),
        }
    }

    #[test]
    fn sealed_signed_and_not_taken_for_a_root() {
        let owner = StaticSecret::from([9u8; 32]);
        let signer = SigningKey::from_bytes(&[5u8; 32]);
        let record = sample();
        let block = record.seal(&PublicKey::from(&owner), &signer).unwrap();
        let score = Score::of(&block);
        let (back, who) = History::open(score, &block, &owner).unwrap();
        assert_eq!(back, record);
        assert_eq!(who, signer.verifying_key());
        for i in [0, 17, 60, block.len() - 1] {
            let mut bad = block.clone();
            bad[i] ^= 1;
            assert!(History::open(score, &bad, &owner).is_err(), "byte {i}");
        }
        assert!(matches!(
            crate::format::snapshot::Snapshot::open(score, &block, &owner),
            Err(crate::format::snapshot::SnapshotError::NotARoot(_))
        ));
        let stranger = StaticSecret::from([10u8; 32]);
        assert_eq!(
            History::open(score, &block, &stranger),
            Err(HistoryError::Sealed(score))
        );
        let too_many = History {
            kept: vec![Score::of(b"x"); MAX_KEPT + 1],
            ..sample()
        };
        assert_eq!(
            too_many.seal(&PublicKey::from(&owner), &signer),
            Err(HistoryError::TooMany)
        );
    }

    /// Pins the record format. Do not change these bytes; add a version.
    #[test]
    fn golden_record() {
        let owner = StaticSecret::from([9u8; 32]);
        let signer = SigningKey::from_bytes(&[5u8; 32]);
        let block = sample().seal_with(
            &PublicKey::from(&owner),
            &signer,
            StaticSecret::from([3u8; 32]),
            [4u8; 24],
        );
        let golden = hex::decode(GOLDEN_RECORD.replace(['\n', ' '], "")).unwrap();
        assert_eq!(
            hex::encode(&block),
            hex::encode(&golden),
            "the history record format changed"
        );
        let (record, _) = History::open(Score::of(&golden), &golden, &owner).unwrap();
        assert_eq!(record, sample());
    }

    // Checked independently of this code: Python's `cryptography` (X25519,
    // Ed25519), `hmac`, and pycryptodome's XChaCha20-Poly1305 make the
    // same bytes.
    const GOLDEN_RECORD: &str = "
    6576656e746920686973746f727920310a5dfedd3b6bd47f6fa28ee15d969d5bb0ea53774d488bdaf9df1c6e0124b3ef
    22040404040404040404040404040404040404040404040404cd98cb4112cb6a0507cc199ef127069db98220ac8aa715
    aa97a73864288ecbc2c66060281080a7b10a07aeed61e65241e888ad70d8dad0d9cb5612401e73bce85ea39e4ed65fbf
    71f6a9a55766e933ae6bafbe020e24f52c5629cd766228eb16733bb27f5c8716a76a6297bc7d63b5cfb5c4a519710bda
    8d639ef1ec9065fb8ea30e9b7ae76029a9991b3da4ca5623343fbc42a3d05c50f7d609eb76ef06e38fa114d9f686ff8b
    0d4ad5d717bc9978bf419b7a0bc6677086a19cb18f66f25979482514d88faa67c8d2a2456d40436fd4b591a2";
}
