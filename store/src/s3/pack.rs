//! The s3 engine's formats, pure (no I/O): a pack's index object, and
//! where a block lives. Pinned in `docs/FORMAT.md`.
//!
//! A *pack* is an object holding many blocks, each as a data-log record
//! (`log/record.rs`: a 32-byte header, then the block), back to back. Its
//! *pack index* is a small object beside it that lists every record:
//!
//! `magic "EvX1"[4] count[4] pack_len[8] {header[32] offset[8]}×count sha1[20]`
//!
//! integers big-endian, `offset` the record header's position in the pack,
//! `sha1` the SHA-1 of every byte before it. A front-end writes the pack
//! first and its index after it, and its indexes strictly in sequence
//! order, so an index that can be read names a pack that is whole, and the
//! indexes of one front-end are always a prefix of its sequence numbers.

//! A pack index that carries more than its pack's blocks is a version 2
//! index (`EvX2`): besides the blocks, the blocks this pack holds copies of
//! (moved there out of packs being removed), when it was sealed (the
//! stamp of its new blocks' first references), and what the front-end shares
//! with the others about who holds what: references (a writer stored or
//! marked a block that was already there) and releases (a prune let go of
//! a writer's references older than a time). See `docs/FORMAT.md`.
//!
//! `magic "EvX2"[4] pack_len[8] time[8] blocks[4] moved[4] refs[4] releases[4]
//!  {header[32] offset[8]}×(blocks+moved) {score[20] type[1] writer[4] time[8]}×refs
//!  {writer[4] cutoff[8]}×releases sha1[20]`

use eventi_shared::Score;

use crate::log::record::{decode_header, encode_header, header_writer, HEADER_LEN};
use crate::BlockKey;

/// Magic bytes at the start of a pack index.
pub const INDEX_MAGIC: &[u8; 4] = b"EvX1";
/// Magic bytes at the start of a version 2 pack index.
pub const INDEX_MAGIC_2: &[u8; 4] = b"EvX2";
/// Bytes of one shared reference in a version 2 index.
pub const REF_LEN: usize = BlockKey::LEN + 4 + 8;
/// Bytes of one release in a version 2 index.
pub const RELEASE_LEN: usize = 12;
/// Bytes before the entries of a version 2 pack index.
const INDEX_HEAD_2: usize = 36;
/// Bytes of one entry of a pack index.
pub const ENTRY_LEN: usize = HEADER_LEN + 8;
/// Bytes before the entries of a pack index.
const INDEX_HEAD: usize = 16;

/// One block of a pack, as its index lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    /// The block.
    pub key: BlockKey,
    /// Bytes of block data.
    pub len: u32,
    /// The writer charged for it.
    pub writer: u32,
    /// Where its record's header starts in the pack.
    pub offset: u64,
}

/// Encodes a version 1 pack index for a pack of `pack_len` bytes (what
/// stores made before version 2 hold; kept to test their reading).
#[cfg(test)]
pub fn encode_index(entries: &[PackEntry], pack_len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_HEAD + entries.len() * ENTRY_LEN + 20);
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    out.extend_from_slice(&pack_len.to_be_bytes());
    for e in entries {
        out.extend_from_slice(&encode_header(&e.key, e.len as usize, e.writer));
        out.extend_from_slice(&e.offset.to_be_bytes());
    }
    let sum = Score::of(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// Why a pack index cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadIndex {
    /// Shorter than its header and checksum, or not the magic.
    #[error("not a pack index")]
    NotAnIndex,
    /// The checksum does not match (truncated or altered).
    #[error("pack index checksum mismatch")]
    Checksum,
    /// The count does not match the length.
    #[error("pack index says {0} entries but holds another number")]
    Count(u32),
    /// An entry's header does not parse, or its record overruns the pack.
    #[error("pack index entry {0} is malformed")]
    Entry(usize),
}

/// A reference one front-end shares with the others: `writer` stored
/// `key` again, or marked it as needed, at `time` (Unix seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefEntry {
    /// The block.
    pub key: BlockKey,
    /// Who holds it.
    pub writer: u32,
    /// When (the reference's stamp, `refs.rs`).
    pub time: u64,
}

/// A prune's commit, shared: every reference of `writer` stamped before
/// `cutoff` is let go of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Release {
    /// Whose references.
    pub writer: u32,
    /// Unix seconds: references stamped before it go.
    pub cutoff: u64,
}

/// Everything a pack index says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackIndex {
    /// The pack's length in bytes.
    pub pack_len: u64,
    /// When the pack was sealed (Unix seconds), no earlier than any of
    /// its new blocks was stored: their writers' references are stamped
    /// with it. 0 in a version 1 index (made before prunes on s3).
    pub time: u64,
    /// Blocks stored for the first time in this pack.
    pub blocks: Vec<PackEntry>,
    /// Blocks whose new home is this pack (copied out of a pack being
    /// removed): not charged to anyone again.
    pub moved: Vec<PackEntry>,
    /// References shared with the other front-ends.
    pub refs: Vec<RefEntry>,
    /// Releases shared with the other front-ends.
    pub releases: Vec<Release>,
}

impl PackIndex {
    /// Whether the index says nothing at all (no pack need be written).
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
            && self.moved.is_empty()
            && self.refs.is_empty()
            && self.releases.is_empty()
    }

    /// Encodes the index (version 2).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            INDEX_HEAD_2
                + (self.blocks.len() + self.moved.len()) * ENTRY_LEN
                + self.refs.len() * REF_LEN
                + self.releases.len() * RELEASE_LEN
                + 20,
        );
        out.extend_from_slice(INDEX_MAGIC_2);
        out.extend_from_slice(&self.pack_len.to_be_bytes());
        out.extend_from_slice(&self.time.to_be_bytes());
        for n in [
            self.blocks.len(),
            self.moved.len(),
            self.refs.len(),
            self.releases.len(),
        ] {
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        for e in self.blocks.iter().chain(&self.moved) {
            out.extend_from_slice(&encode_header(&e.key, e.len as usize, e.writer));
            out.extend_from_slice(&e.offset.to_be_bytes());
        }
        for r in &self.refs {
            out.extend_from_slice(&r.key.to_bytes());
            out.extend_from_slice(&r.writer.to_be_bytes());
            out.extend_from_slice(&r.time.to_be_bytes());
        }
        for r in &self.releases {
            out.extend_from_slice(&r.writer.to_be_bytes());
            out.extend_from_slice(&r.cutoff.to_be_bytes());
        }
        let sum = Score::of(&out);
        out.extend_from_slice(sum.as_bytes());
        out
    }

    /// Decodes a pack index of either version.
    pub fn decode(bytes: &[u8]) -> Result<PackIndex, BadIndex> {
        if bytes.len() >= 4 && &bytes[0..4] == INDEX_MAGIC_2 {
            return decode_index_2(bytes);
        }
        let (blocks, pack_len) = decode_index(bytes)?;
        Ok(PackIndex {
            pack_len,
            blocks,
            ..PackIndex::default()
        })
    }
}

/// Decodes a version 1 pack index: its entries and the pack's length.
pub fn decode_index(bytes: &[u8]) -> Result<(Vec<PackEntry>, u64), BadIndex> {
    if bytes.len() < INDEX_HEAD + 20 || &bytes[0..4] != INDEX_MAGIC {
        return Err(BadIndex::NotAnIndex);
    }
    let (body, sum) = bytes.split_at(bytes.len() - 20);
    if Score::of(body).as_bytes() != sum {
        return Err(BadIndex::Checksum);
    }
    let count = u32::from_be_bytes(body[4..8].try_into().expect("4"));
    let pack_len = u64::from_be_bytes(body[8..16].try_into().expect("8"));
    let rest = &body[INDEX_HEAD..];
    if rest.len() != count as usize * ENTRY_LEN {
        return Err(BadIndex::Count(count));
    }
    let entries = decode_entries(rest, pack_len, 0)?;
    Ok((entries, pack_len))
}

fn decode_index_2(bytes: &[u8]) -> Result<PackIndex, BadIndex> {
    if bytes.len() < INDEX_HEAD_2 + 20 {
        return Err(BadIndex::NotAnIndex);
    }
    let (body, sum) = bytes.split_at(bytes.len() - 20);
    if Score::of(body).as_bytes() != sum {
        return Err(BadIndex::Checksum);
    }
    let pack_len = u64::from_be_bytes(body[4..12].try_into().expect("8"));
    let time = u64::from_be_bytes(body[12..20].try_into().expect("8"));
    let count = |i: usize| u32::from_be_bytes(body[20 + 4 * i..24 + 4 * i].try_into().expect("4"));
    let (blocks, moved, refs, releases) = (count(0), count(1), count(2), count(3));
    let rest = &body[INDEX_HEAD_2..];
    let entries_len = (blocks as usize + moved as usize) * ENTRY_LEN;
    let refs_len = refs as usize * REF_LEN;
    if rest.len() != entries_len + refs_len + releases as usize * RELEASE_LEN {
        return Err(BadIndex::Count(blocks));
    }
    let (entries, rest) = rest.split_at(entries_len);
    let (ref_bytes, release_bytes) = rest.split_at(refs_len);
    let mut all = decode_entries(entries, pack_len, 0)?;
    let moved_entries = all.split_off(blocks as usize);
    let base = all.len() + moved_entries.len();
    let mut shared = Vec::with_capacity(refs as usize);
    for (i, raw) in ref_bytes.chunks_exact(REF_LEN).enumerate() {
        let key = BlockKey::from_bytes(&raw[..BlockKey::LEN]).ok_or(BadIndex::Entry(base + i))?;
        shared.push(RefEntry {
            key,
            writer: u32::from_be_bytes(
                raw[BlockKey::LEN..BlockKey::LEN + 4].try_into().expect("4"),
            ),
            time: u64::from_be_bytes(raw[BlockKey::LEN + 4..].try_into().expect("8")),
        });
    }
    let released = release_bytes
        .chunks_exact(RELEASE_LEN)
        .map(|raw| Release {
            writer: u32::from_be_bytes(raw[..4].try_into().expect("4")),
            cutoff: u64::from_be_bytes(raw[4..].try_into().expect("8")),
        })
        .collect();
    Ok(PackIndex {
        pack_len,
        time,
        blocks: all,
        moved: moved_entries,
        refs: shared,
        releases: released,
    })
}

/// Decodes `{header[32] offset[8]}` entries, numbering them from `first`.
fn decode_entries(rest: &[u8], pack_len: u64, first: usize) -> Result<Vec<PackEntry>, BadIndex> {
    let mut entries = Vec::with_capacity(rest.len() / ENTRY_LEN);
    for (i, raw) in rest.chunks_exact(ENTRY_LEN).enumerate() {
        let i = first + i;
        let (header, offset) = raw.split_at(HEADER_LEN);
        let (key, len) = decode_header(header).ok_or(BadIndex::Entry(i))?;
        let offset = u64::from_be_bytes(offset.try_into().expect("8"));
        let end = offset
            .checked_add((HEADER_LEN + len) as u64)
            .ok_or(BadIndex::Entry(i))?;
        if end > pack_len {
            return Err(BadIndex::Entry(i));
        }
        entries.push(PackEntry {
            key,
            len: len as u32,
            writer: header_writer(header),
            offset,
        });
    }
    Ok(entries)
}

/// Which pack: the front-end process that wrote it and its number there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackId {
    /// The writing front-end's random id, new at every start.
    pub frontend: u64,
    /// Its sequence number at that front-end, from 0.
    pub seq: u64,
}

/// Where a block lives: the local index's value for its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackLocation {
    /// The pack.
    pub pack: PackId,
    /// Where the record's header starts in the pack.
    pub offset: u64,
    /// Bytes of block data after the header.
    pub len: u32,
    /// The writer its pack's index charges for it (who pays, unless a
    /// prune moved that on: table `Payers`).
    pub writer: u32,
}

impl PackLocation {
    /// The index value: frontend[8] seq[8] offset[8] len[4] writer[4],
    /// big-endian.
    pub fn encode(&self) -> [u8; 32] {
        let mut v = [0u8; 32];
        v[0..8].copy_from_slice(&self.pack.frontend.to_be_bytes());
        v[8..16].copy_from_slice(&self.pack.seq.to_be_bytes());
        v[16..24].copy_from_slice(&self.offset.to_be_bytes());
        v[24..28].copy_from_slice(&self.len.to_be_bytes());
        v[28..32].copy_from_slice(&self.writer.to_be_bytes());
        v
    }

    /// The location of entry `e` of pack `pack`.
    pub fn of(pack: PackId, e: &PackEntry) -> PackLocation {
        PackLocation {
            pack,
            offset: e.offset,
            len: e.len,
            writer: e.writer,
        }
    }

    /// Parses an index value; `None` if it is not 32 bytes.
    pub fn decode(v: &[u8]) -> Option<PackLocation> {
        (v.len() == 32).then(|| PackLocation {
            pack: PackId {
                frontend: u64::from_be_bytes(v[0..8].try_into().expect("8")),
                seq: u64::from_be_bytes(v[8..16].try_into().expect("8")),
            },
            offset: u64::from_be_bytes(v[16..24].try_into().expect("8")),
            len: u32::from_be_bytes(v[24..28].try_into().expect("4")),
            writer: u32::from_be_bytes(v[28..32].try_into().expect("4")),
        })
    }

    /// The byte range of the whole record (header and block) in the pack.
    pub fn record_range(&self) -> std::ops::Range<u64> {
        self.offset..self.offset + (HEADER_LEN as u64) + u64::from(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventi_shared::BlockType;

    fn entry(n: u8, offset: u64) -> PackEntry {
        PackEntry {
            key: BlockKey {
                score: Score::of(&[n]),
                block_type: BlockType::DATA,
            },
            len: 1,
            writer: 0x00_0102,
            offset,
        }
    }

    #[test]
    fn index_round_trips_and_rejects_damage() {
        let entries = vec![entry(1, 0), entry(2, 33)];
        let bytes = encode_index(&entries, 66);
        assert_eq!(decode_index(&bytes), Ok((entries.clone(), 66)));
        // Any flipped byte is caught by the checksum.
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(decode_index(&bad).is_err(), "byte {i}");
        }
        assert_eq!(
            decode_index(&bytes[..bytes.len() - 1]),
            Err(BadIndex::Checksum)
        );
        assert_eq!(decode_index(b"EvX1"), Err(BadIndex::NotAnIndex));
        // A record running past the pack's end is refused.
        let over = encode_index(&entries, 65);
        assert_eq!(decode_index(&over), Err(BadIndex::Entry(1)));
    }

    /// The golden bytes in `docs/FORMAT.md`.
    #[test]
    fn index_golden_bytes() {
        let bytes = encode_index(&[entry(1, 0)], 33);
        let hex = hex::encode(&bytes);
        assert_eq!(
            hex,
            "45765831000000010000000000000021\
             457642310d00010200000001bf8b4530d8d246dd74ac53a13471bba17941dff7\
             0000000000000000\
             9553891b65313b73febb8dc19f14735eff781040"
        );
    }

    #[test]
    fn version_2_index_round_trips_and_rejects_damage() {
        let index = PackIndex {
            pack_len: 66,
            time: 1_700_000_001,
            blocks: vec![entry(1, 0)],
            moved: vec![entry(2, 33)],
            refs: vec![RefEntry {
                key: entry(3, 0).key,
                writer: 7,
                time: 1_700_000_000,
            }],
            releases: vec![Release {
                writer: 7,
                cutoff: 1_699_999_000,
            }],
        };
        let bytes = index.encode();
        assert_eq!(&bytes[..4], INDEX_MAGIC_2);
        assert_eq!(PackIndex::decode(&bytes), Ok(index.clone()));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(PackIndex::decode(&bad).is_err(), "byte {i}");
        }
        // A version 1 index reads as new blocks stamped 0.
        let plain = PackIndex {
            pack_len: 33,
            blocks: vec![entry(1, 0)],
            ..PackIndex::default()
        };
        let v1 = encode_index(&plain.blocks, 33);
        assert_eq!(PackIndex::decode(&v1), Ok(plain));
        // An index of references alone names an empty pack.
        let refs_only = PackIndex {
            refs: index.refs.clone(),
            ..PackIndex::default()
        };
        assert!(!refs_only.is_empty());
        assert_eq!(PackIndex::decode(&refs_only.encode()), Ok(refs_only));
    }

    /// The golden bytes of a version 2 index in `docs/FORMAT.md`.
    #[test]
    fn version_2_index_golden_bytes() {
        let index = PackIndex {
            pack_len: 33,
            time: 0x6553_f200,
            blocks: vec![],
            moved: vec![entry(1, 0)],
            refs: vec![RefEntry {
                key: entry(1, 0).key,
                writer: 7,
                time: 0x6553_f100,
            }],
            releases: vec![Release {
                writer: 7,
                cutoff: 0x6553_f000,
            }],
        };
        let hex = hex::encode(index.encode());
        assert_eq!(
            hex,
            "4576583200000000000000210000000065\
             53f20000000000000000010000000100000001\
             457642310d00010200000001bf8b4530d8d246dd74ac53a13471bba17941dff7\
             0000000000000000\
             bf8b4530d8d246dd74ac53a13471bba17941dff70d000000070000000065\
             53f100\
             00000007000000006553f000\
             bc4655e3d3f9b7b7eabb127aa1f652fe02437b44"
        );
    }

    #[test]
    fn locations_round_trip() {
        let loc = PackLocation {
            pack: PackId {
                frontend: 0xdead_beef_0000_0001,
                seq: 7,
            },
            offset: 1 << 33,
            len: 56 << 10,
            writer: 3,
        };
        assert_eq!(PackLocation::decode(&loc.encode()), Some(loc));
        assert_eq!(PackLocation::decode(&[0; 16]), None);
    }
}
