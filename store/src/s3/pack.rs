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

use eventi_shared::Score;

use crate::log::record::{decode_header, encode_header, header_writer, HEADER_LEN};
use crate::BlockKey;

/// Magic bytes at the start of a pack index.
pub const INDEX_MAGIC: &[u8; 4] = b"EvX1";
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

/// Encodes a pack index for a pack of `pack_len` bytes.
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

/// Decodes a pack index: its entries and the pack's length.
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
    let mut entries = Vec::with_capacity(count as usize);
    for (i, raw) in rest.chunks_exact(ENTRY_LEN).enumerate() {
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
    Ok((entries, pack_len))
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
}

impl PackLocation {
    /// The index value: frontend[8] seq[8] offset[8] len[4], big-endian.
    pub fn encode(&self) -> [u8; 28] {
        let mut v = [0u8; 28];
        v[0..8].copy_from_slice(&self.pack.frontend.to_be_bytes());
        v[8..16].copy_from_slice(&self.pack.seq.to_be_bytes());
        v[16..24].copy_from_slice(&self.offset.to_be_bytes());
        v[24..28].copy_from_slice(&self.len.to_be_bytes());
        v
    }

    /// Parses an index value; `None` if it is not 28 bytes.
    pub fn decode(v: &[u8]) -> Option<PackLocation> {
        (v.len() == 28).then(|| PackLocation {
            pack: PackId {
                frontend: u64::from_be_bytes(v[0..8].try_into().expect("8")),
                seq: u64::from_be_bytes(v[8..16].try_into().expect("8")),
            },
            offset: u64::from_be_bytes(v[16..24].try_into().expect("8")),
            len: u32::from_be_bytes(v[24..28].try_into().expect("4")),
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
    fn locations_round_trip() {
        let loc = PackLocation {
            pack: PackId {
                frontend: 0xdead_beef_0000_0001,
                seq: 7,
            },
            offset: 1 << 33,
            len: 56 << 10,
        };
        assert_eq!(PackLocation::decode(&loc.encode()), Some(loc));
        assert_eq!(PackLocation::decode(&[0; 16]), None);
    }
}
