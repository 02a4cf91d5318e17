//! The data log's record format, pure: a 32-byte header then the block.
//!
//! `magic "EvB1"[4] type[1] writer[3] length[4] score[20] data[length]`,
//! all integers big-endian, `writer` being the write key that stored the
//! block (0 = anonymous) so that recovery can re-charge usage. Pinned in
//! `docs/FORMAT.md`.

use bytes::Bytes;
use eventi_shared::{BlockType, Score};

use crate::{BlockKey, StoreError};

/// Magic bytes at the start of every log record.
pub const RECORD_MAGIC: &[u8; 4] = b"EvB1";
/// Bytes in a record header.
pub const HEADER_LEN: usize = 32;
/// Largest block a record may hold; longer lengths mark a bad header.
pub const MAX_RECORD_DATA: usize = 64 << 20;

/// Where a block lives in the log: the index's value for its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Segment number.
    pub segment: u32,
    /// Offset of the record's header in the segment.
    pub offset: u64,
    /// Bytes of block data after the header.
    pub len: u32,
}

impl Location {
    /// The index value: segment[4] offset[8] len[4], big-endian.
    pub fn encode(&self) -> [u8; 16] {
        let mut v = [0u8; 16];
        v[0..4].copy_from_slice(&self.segment.to_be_bytes());
        v[4..12].copy_from_slice(&self.offset.to_be_bytes());
        v[12..16].copy_from_slice(&self.len.to_be_bytes());
        v
    }

    /// Parses an index value; `None` if it is not 16 bytes.
    pub fn decode(v: &[u8]) -> Option<Location> {
        (v.len() == 16).then(|| Location {
            segment: u32::from_be_bytes(v[0..4].try_into().expect("4")),
            offset: u64::from_be_bytes(v[4..12].try_into().expect("8")),
            len: u32::from_be_bytes(v[12..16].try_into().expect("4")),
        })
    }

    /// Bytes of the whole record, header included.
    pub fn record_len(&self) -> usize {
        HEADER_LEN + self.len as usize
    }
}

/// The header of a record holding `len` bytes of block `key`.
pub fn encode_header(key: &BlockKey, len: usize, writer: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(RECORD_MAGIC);
    h[4] = key.block_type.to_wire();
    h[5..8].copy_from_slice(&writer.to_be_bytes()[1..4]);
    h[8..12].copy_from_slice(&(len as u32).to_be_bytes());
    h[12..32].copy_from_slice(key.score.as_bytes());
    h
}

/// The writer recorded in a header.
pub fn header_writer(h: &[u8]) -> u32 {
    u32::from_be_bytes([0, h[5], h[6], h[7]])
}

/// A parsed record header; `None` if it is not one.
pub fn decode_header(h: &[u8]) -> Option<(BlockKey, usize)> {
    if h.len() < HEADER_LEN || &h[0..4] != RECORD_MAGIC {
        return None;
    }
    let block_type = BlockType::from_wire(h[4])?;
    let len = u32::from_be_bytes(h[8..12].try_into().expect("4")) as usize;
    if len > MAX_RECORD_DATA {
        return None;
    }
    let score = Score::from_slice(&h[12..32])?;
    Some((BlockKey { score, block_type }, len))
}

/// Checks that a record read at `loc` is the one the index promised and
/// returns its data.
pub fn record_data(key: &BlockKey, loc: Location, buf: Vec<u8>) -> Result<Bytes, StoreError> {
    match decode_header(&buf) {
        Some((k, len)) if k == *key && len == loc.len as usize => {}
        _ => {
            return Err(StoreError::BadLocation(
                key.score,
                format!("segment {} offset {}", loc.segment, loc.offset),
            ))
        }
    }
    let mut data = Bytes::from(buf);
    Ok(data.split_off(HEADER_LEN))
}

/// Looks in `buf` (bytes of a segment from some offset on) for a record
/// that parses and whose data hashes to its score; its offset in `buf`.
pub fn find_record(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + HEADER_LEN <= buf.len() {
        if &buf[i..i + 4] == RECORD_MAGIC {
            if let Some((key, len)) = decode_header(&buf[i..]) {
                let start = i + HEADER_LEN;
                if start + len <= buf.len() && Score::of(&buf[start..start + len]) == key.score {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header is pinned (docs/FORMAT.md): a record of the 3-byte
    /// block "abc", type data (wire 0x0d), writer 5.
    #[test]
    fn header_golden_vector() {
        let data = b"abc";
        let key = BlockKey {
            score: Score::of(data),
            block_type: BlockType::DATA,
        };
        let h = encode_header(&key, data.len(), 5);
        assert_eq!(
            hex::encode(h),
            "457642310d00000500000003a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(decode_header(&h), Some((key, 3)));
        assert_eq!(header_writer(&h), 5);
        let mut record = h.to_vec();
        record.extend_from_slice(data);
        let mut noisy = vec![0x45u8; 7];
        noisy.extend_from_slice(&record);
        assert_eq!(find_record(&noisy), Some(7));
        let loc = Location {
            segment: 2,
            offset: 40,
            len: 3,
        };
        assert_eq!(Location::decode(&loc.encode()), Some(loc));
        assert_eq!(record_data(&key, loc, record).unwrap().as_ref(), data);
    }
}
