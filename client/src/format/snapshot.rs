//! Snapshot roots: the block a backup's root score names.
//!
//! A root holds the tree's reference, the parent snapshot's root score (so
//! the newest root reaches all history), time, host, paths, tags and
//! counts. It is sealed to the owner's X25519 public key: whoever holds
//! only the public half can add snapshots but cannot read old ones. Inside
//! the seal, the body is signed with the Ed25519 write key of the machine
//! that made it, so a reader learns which key wrote each snapshot.
//!
//! Layout (`docs/FORMAT.md`), stored as one venti data block:
//!
//! ```text
//! MAGIC[18] ephemeral_public[32] nonce[24] XChaCha20-Poly1305(sealed)
//! key    = HMAC-SHA-256(X25519(ephemeral, owner), SEAL_LABEL || ephemeral_public || owner_public)
//! aad    = MAGIC || ephemeral_public || owner_public
//! sealed = body_len[4] body signer[32] signature[64]
//! signature = Ed25519(signer, SIGN_LABEL || owner_public || body)
//! body   = version[1]=1 tree[84] has_parent[1] parent[20]? time_ns[8]
//!          host[s16] paths: count[2] {s32}* tags: count[2] {s16}*
//!          files[8] dirs[8] symlinks[8] others[8] bytes[8] errors[8]
//! ```
//!
//! Readers skip body bytes after the fields they know.

use ed25519_dalek::{SigningKey, VerifyingKey};
use eventi_shared::Score;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::format::block::Ref;
use crate::format::sealed::{self, OpenError};

/// First bytes of every snapshot root.
pub const MAGIC: &[u8; 18] = b"eventi snapshot 1\n";
/// The envelope of snapshot roots.
pub const KIND: sealed::Kind = sealed::Kind {
    magic: MAGIC,
    seal_label: b"eventi snapshot seal v1\0",
    sign_label: b"eventi snapshot signature v1\0",
};
const BODY_VERSION: u8 = 1;

/// What a backup counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Regular files (hard links included once).
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Hard links, devices, fifos.
    pub others: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Entries that could not be read (and are not in the snapshot).
    pub errors: u64,
}

impl std::ops::AddAssign for Counts {
    /// Adds what a part of the tree counted.
    fn add_assign(&mut self, more: Counts) {
        self.files += more.files;
        self.dirs += more.dirs;
        self.symlinks += more.symlinks;
        self.others += more.others;
        self.bytes += more.bytes;
        self.errors += more.errors;
    }
}

/// A snapshot root's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The snapshot's directory tree.
    pub tree: Ref,
    /// The previous snapshot's root score.
    pub parent: Option<Score>,
    /// When the backup started, ns since the epoch.
    pub time_ns: i64,
    /// The host it ran on.
    pub host: String,
    /// The paths backed up, absolute.
    pub paths: Vec<Vec<u8>>,
    /// Tags given with `--tag`.
    pub tags: Vec<String>,
    /// What it holds.
    pub counts: Counts,
}

/// Why a root did not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    /// Not a snapshot root at all.
    #[error("block {0} is not an eventi snapshot root")]
    NotARoot(Score),
    /// Sealed to another key, or damaged.
    #[error("snapshot {0} does not open with this key file (sealed to another key, or damaged)")]
    Sealed(Score),
    /// Opened but malformed or badly signed.
    #[error("snapshot {0} is malformed: {1}")]
    Malformed(Score, &'static str),
}

impl Snapshot {
    fn encode_body(&self) -> Vec<u8> {
        let mut b = vec![BODY_VERSION];
        b.extend_from_slice(&self.tree.to_bytes());
        match self.parent {
            Some(p) => {
                b.push(1);
                b.extend_from_slice(p.as_bytes());
            }
            None => b.push(0),
        }
        b.extend_from_slice(&self.time_ns.to_be_bytes());
        let host = &self.host.as_bytes()[..self.host.len().min(u16::MAX as usize)];
        b.extend_from_slice(&(host.len() as u16).to_be_bytes());
        b.extend_from_slice(host);
        b.extend_from_slice(&(self.paths.len() as u16).to_be_bytes());
        for p in &self.paths {
            b.extend_from_slice(&(p.len() as u32).to_be_bytes());
            b.extend_from_slice(p);
        }
        b.extend_from_slice(&(self.tags.len() as u16).to_be_bytes());
        for t in &self.tags {
            let t = &t.as_bytes()[..t.len().min(u16::MAX as usize)];
            b.extend_from_slice(&(t.len() as u16).to_be_bytes());
            b.extend_from_slice(t);
        }
        let c = &self.counts;
        for v in [c.files, c.dirs, c.symlinks, c.others, c.bytes, c.errors] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b
    }

    fn decode_body(score: Score, b: &[u8]) -> Result<Snapshot, SnapshotError> {
        let bad = |why| SnapshotError::Malformed(score, why);
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], SnapshotError> {
            let s = b.get(at..at + n).ok_or(bad("truncated"))?;
            at += n;
            Ok(s)
        };
        if take(1)?[0] != BODY_VERSION {
            return Err(bad("unknown version"));
        }
        let tree = Ref::from_bytes(take(Ref::LEN)?).ok_or(bad("bad tree reference"))?;
        let parent = match take(1)?[0] {
            0 => None,
            1 => Some(Score::from_slice(take(20)?).ok_or(bad("bad parent"))?),
            _ => return Err(bad("bad parent flag")),
        };
        let time_ns = i64::from_be_bytes(take(8)?.try_into().expect("8"));
        let n = u16::from_be_bytes(take(2)?.try_into().expect("2")) as usize;
        let host = String::from_utf8(take(n)?.to_vec()).map_err(|_| bad("host not UTF-8"))?;
        let count = u16::from_be_bytes(take(2)?.try_into().expect("2"));
        let mut paths = Vec::new();
        for _ in 0..count {
            let n = u32::from_be_bytes(take(4)?.try_into().expect("4")) as usize;
            paths.push(take(n)?.to_vec());
        }
        let count = u16::from_be_bytes(take(2)?.try_into().expect("2"));
        let mut tags = Vec::new();
        for _ in 0..count {
            let n = u16::from_be_bytes(take(2)?.try_into().expect("2")) as usize;
            tags.push(String::from_utf8(take(n)?.to_vec()).map_err(|_| bad("tag not UTF-8"))?);
        }
        let mut v = [0u64; 6];
        for x in v.iter_mut() {
            *x = u64::from_be_bytes(take(8)?.try_into().expect("8"));
        }
        let counts = Counts {
            files: v[0],
            dirs: v[1],
            symlinks: v[2],
            others: v[3],
            bytes: v[4],
            errors: v[5],
        };
        Ok(Snapshot {
            tree,
            parent,
            time_ns,
            host,
            paths,
            tags,
            counts,
        })
    }

    /// Seals the snapshot to `owner` and signs it with `signer`: the root
    /// block to store.
    pub fn seal(&self, owner: &PublicKey, signer: &SigningKey) -> Vec<u8> {
        KIND.seal(&self.encode_body(), owner, signer)
    }

    /// [`Snapshot::seal`] with a given ephemeral secret and nonce (tests).
    pub fn seal_with(
        &self,
        owner: &PublicKey,
        signer: &SigningKey,
        ephemeral: StaticSecret,
        nonce: [u8; 24],
    ) -> Vec<u8> {
        KIND.seal_with(&self.encode_body(), owner, signer, ephemeral, nonce)
    }

    /// Opens a root block with the owner's secret; returns the snapshot
    /// and the public key that signed it.
    pub fn open(
        score: Score,
        block: &[u8],
        owner: &StaticSecret,
    ) -> Result<(Snapshot, VerifyingKey), SnapshotError> {
        let (body, signer) = KIND.open(block, owner).map_err(|e| match e {
            OpenError::OtherKind => SnapshotError::NotARoot(score),
            OpenError::Sealed => SnapshotError::Sealed(score),
            OpenError::Malformed(why) => SnapshotError::Malformed(score, why),
        })?;
        Ok((Snapshot::decode_body(score, &body)?, signer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        let (_, tree) = crate::format::block::seal(&[1; 32], b"a tree");
        Snapshot {
            tree,
            parent: Some(Score::of(b"the parent root")),
            time_ns: 1_764_000_000_123_456_789,
            host: "backup-host".into(),
            paths: vec![b"/home/ada".to_vec(), vec![b'/', 0xff, b'x']],
            tags: vec!["daily".into(), "laptop".into()],
            counts: Counts {
                files: 45_000,
                dirs: 3_000,
                symlinks: 4_500,
                others: 12,
                bytes: 1_250_000_000,
                errors: 1,
            },
        }
    }

    #[test]
    fn sealed_to_the_owner_and_signed() {
        let owner = StaticSecret::from([9u8; 32]);
        let signer = SigningKey::from_bytes(&[5u8; 32]);
        let snap = sample();
        let block = snap.seal(&PublicKey::from(&owner), &signer);
        let score = Score::of(&block);
        let (back, who) = Snapshot::open(score, &block, &owner).unwrap();
        assert_eq!(back, snap);
        assert_eq!(who, signer.verifying_key());
        // Two seals of one snapshot differ (fresh ephemeral key and nonce).
        assert_ne!(snap.seal(&PublicKey::from(&owner), &signer), block);
        // Another key cannot open it.
        let stranger = StaticSecret::from([10u8; 32]);
        assert_eq!(
            Snapshot::open(score, &block, &stranger),
            Err(SnapshotError::Sealed(score))
        );
        // Any flipped byte is detected.
        for i in [0, 20, 60, block.len() - 1] {
            let mut bad = block.clone();
            bad[i] ^= 1;
            assert!(Snapshot::open(score, &bad, &owner).is_err(), "byte {i}");
        }
        assert_eq!(
            Snapshot::open(score, b"not a root", &owner),
            Err(SnapshotError::NotARoot(score))
        );
    }

    /// Pins the root format: a root sealed today must open with every later
    /// version. Do not change these bytes; add a new version instead.
    #[test]
    fn golden_root() {
        let owner = StaticSecret::from([9u8; 32]);
        let signer = SigningKey::from_bytes(&[5u8; 32]);
        let block = sample().seal_with(
            &PublicKey::from(&owner),
            &signer,
            StaticSecret::from([3u8; 32]),
            [4u8; 24],
        );
        let golden = hex::decode(GOLDEN_ROOT.replace(['\n', ' '], "")).unwrap();
        assert_eq!(
            hex::encode(&block),
            hex::encode(&golden),
            "the snapshot root format changed: that breaks every existing backup"
        );
        let (snap, _) = Snapshot::open(Score::of(&golden), &golden, &owner).unwrap();
        assert_eq!(snap, sample());
    }

    // Checked independently of this code: Python's `cryptography` (X25519,
    // Ed25519), `hmac`, and pycryptodome's XChaCha20-Poly1305 open it and
    // verify its signature.
    const GOLDEN_ROOT: &str = "
    6576656e746920736e617073686f7420310a5dfedd3b6bd47f6fa28ee15d969d5bb0ea53774d488bdaf9df1c6e0124b3
    ef220404040404040404040404040404040404040404040404040b5e2458c29f7229f5a94d661a850cf9a4d9d48a6ff9
    6002a6937149fd88180b9afe8c479df63328d90bd8c98d4fd3a95aea30d5315a10e49b26d323df82874b23f15177fa4e
    0507c5a0bb45cab6ac10e9f0039085c48ab0563c2c7d2fb6bc138d7a4889b714e26db4f3f2623d1c330023f255deefbb
    830952606bfe444f2353fd2390235d8ca095ae100b2ce7fb2129b970cc44e021a046d53ebeb3c9868f7e408d1394eb3c
    dbb42ed7879d14bca796faffb4686b7d9731fd4c72082e963736c22aa81a612e6beb7f67a707d9bacfba9d3a9809611b
    d080723494d76828cd6e87479fb8e85ea83e7bc7d79452e59f1c200991488325af77904f2ca2a8abb2aa1523404da687
    d96d28bd266bdbac9a5392a04e216f27ca1681262d80f82c2eff49965013b72ac3886d40a303212638f4f42c97762a16
    2f45f45256e47a872531c126172bedaa85ef6bc4";
}
