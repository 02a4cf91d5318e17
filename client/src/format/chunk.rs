//! Content-defined extents, their compression, and their blocks.
//!
//! A stream is cut into extents by FastCDC (2020): 64 KiB minimum,
//! 256 KiB average, 1 MiB maximum, cut points keyed by the convergence
//! secret. An extent is compressed as one zstd frame, which finds far more
//! to share than the 32 KiB chunks venti's 56 KiB block limit allowed
//! before (measured in docs/PERFORMANCE.md), and then laid out in blocks
//! that fit that limit. One extent gives one or more *leaves* of the tree
//! (`tree.rs`), each the bytes of stream a reader gets back whole:
//!
//! - an extent of at most [`MAX_CHUNK`] bytes is one block, `flag[1]` +
//!   payload: flag 0 a raw chunk, 1 a zstd frame (the blocks every
//!   earlier version wrote, so small files still deduplicate with them);
//! - a larger extent that compresses by at least 1/32 is one leaf of
//!   pieces: its frame cut into [`MAX_CHUNK`]-byte parts, each a block
//!   `6` + part; the leaf is their concatenation, decompressed;
//! - a larger extent that does not compress is cut into nearly equal raw
//!   chunks (flag 0) of at most [`MAX_CHUNK`] bytes, one leaf each, so
//!   that incompressible data (video, archives, VM images) still reads at
//!   any offset one block at a time.
//!
//! Encryption adds a 16-byte tag (`block.rs`), so a block plaintext is at
//! most 57,344 - 16 bytes, and 47 more are left for the venti framing.

use std::io::Read;

use crate::format::block::BLOCK_OVERHEAD;

/// Smallest extent (except a stream's last).
pub const MIN_EXTENT: u32 = 64 * 1024;
/// Target average extent.
pub const AVG_EXTENT: u32 = 256 * 1024;
/// Largest extent: also the most bytes one leaf of a tree can hold.
pub const MAX_EXTENT: u32 = 1024 * 1024;
/// Largest payload of one block (a raw chunk, or a piece of a frame):
/// with its flag and tag it still fits 56 KiB.
pub const MAX_CHUNK: u32 = (eventi_shared::MAX_BLOCK_V02 - 1 - BLOCK_OVERHEAD - 47) as u32;
/// Most pieces one leaf can have: a frame is kept only when smaller than
/// its extent.
pub const MAX_PIECES: usize = (MAX_EXTENT as usize).div_ceil(MAX_CHUNK as usize);

const RAW: u8 = 0;
const ZSTD: u8 = 1;
/// Flag of a block that holds one piece of a larger extent's frame.
const PIECE: u8 = 6;
const ZSTD_LEVEL: i32 = 2;

/// Label of the chunker seed's derivation.
const SEED_LABEL: &[u8] = b"eventi chunker seed v1";

/// The chunker seed for a convergence secret: the first 8 bytes (big
/// endian) of HMAC-SHA-256(secret, "eventi chunker seed v1"). FastCDC's
/// gear table is XORed with it, so cut points, hence extent sizes, depend
/// on the secret: a store that knows a file cannot look for its block
/// sizes (restic and Borg key their chunkers per repository the same
/// way). Sharing the convergence secret shares the seed, so dedup within
/// a circle still works.
pub fn seed_for(convergence: &[u8; 32]) -> u64 {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(convergence)
        .expect("HMAC takes any key length");
    mac.update(SEED_LABEL);
    let out = mac.finalize().into_bytes();
    u64::from_be_bytes(out[..8].try_into().expect("8 bytes"))
}

/// Splits a stream into content-defined extents, cut points keyed by
/// `seed`.
pub fn extents<R: Read>(source: R, seed: u64) -> impl Iterator<Item = std::io::Result<Vec<u8>>> {
    fastcdc::v2020::StreamCDC::with_level_and_seed(
        source,
        MIN_EXTENT,
        AVG_EXTENT,
        MAX_EXTENT,
        fastcdc::v2020::Normalization::Level1,
        seed,
    )
    .map(|r| {
        r.map(|c| c.data).map_err(|e| match e {
            fastcdc::v2020::Error::IoError(io) => io,
            other => std::io::Error::other(other.to_string()),
        })
    })
}

/// The extents of a content held whole in memory: exactly what
/// [`extents`] gives for it, as slices of it, without the streaming
/// chunker's copies and the zeroed buffer of [`MAX_EXTENT`] bytes it
/// makes for every file.
pub fn extents_in_memory(data: &[u8], seed: u64) -> impl Iterator<Item = &[u8]> {
    fastcdc::v2020::FastCDC::with_level_and_seed(
        data,
        MIN_EXTENT,
        AVG_EXTENT,
        MAX_EXTENT,
        fastcdc::v2020::Normalization::Level1,
        seed,
    )
    .map(move |c| &data[c.offset..c.offset + c.length])
}

thread_local! {
    /// One compression context per thread: making a context per chunk
    /// cost more than a tenth of a backup's CPU.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

thread_local! {
    /// One decompression context per thread, for the same reason.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// `data` compressed into one zstd frame, if that saves at least 1/32 of
/// it (already-compressed data costs no more than its flag byte).
fn compress(data: &[u8]) -> Option<Vec<u8>> {
    // Compress straight into a buffer bounded so that an incompressible
    // input fails fast instead of being kept (zstd fills the capacity, so
    // it is not zeroed first).
    let mut out = Vec::with_capacity(data.len() - data.len() / 32);
    let n = COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
        }
        c.as_mut()
            .and_then(|c| c.compress_to_buffer(data, &mut out).ok())
    })?;
    (n + n / 32 < data.len()).then(|| {
        out.truncate(n);
        out
    })
}

/// A chunk of at most [`MAX_CHUNK`] bytes as one block plaintext:
/// compressed if that pays, else raw.
pub fn pack(chunk: &[u8]) -> Vec<u8> {
    debug_assert!(chunk.len() <= MAX_CHUNK as usize);
    let (flag, payload) = match compress(chunk) {
        Some(frame) => (ZSTD, frame),
        None => (RAW, chunk.to_vec()),
    };
    flagged(flag, &payload)
}

fn flagged(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + payload.len());
    out.push(flag);
    out.extend_from_slice(payload);
    out
}

/// One leaf of a tree as block plaintexts: `size` bytes of stream.
#[derive(Debug, PartialEq, Eq)]
pub struct PackedLeaf {
    /// Bytes of stream the leaf holds.
    pub size: usize,
    /// Its blocks' plaintexts: one packed chunk, or the pieces of a frame.
    pub blocks: Vec<Vec<u8>>,
}

/// An extent as the leaves that hold it (see the module documentation).
pub fn pack_extent(extent: &[u8]) -> Vec<PackedLeaf> {
    let size = extent.len();
    if size <= MAX_CHUNK as usize {
        return vec![PackedLeaf {
            size,
            blocks: vec![pack(extent)],
        }];
    }
    match compress(extent) {
        Some(frame) => vec![PackedLeaf {
            size,
            blocks: frame
                .chunks(MAX_CHUNK as usize)
                .map(|part| flagged(PIECE, part))
                .collect(),
        }],
        None => {
            // Nearly equal parts: no tiny last block.
            let parts = size.div_ceil(MAX_CHUNK as usize);
            let (base, longer) = (size / parts, size % parts);
            let mut at = 0;
            (0..parts)
                .map(|i| {
                    let len = base + usize::from(i < longer);
                    let raw = &extent[at..at + len];
                    at += len;
                    PackedLeaf {
                        size: len,
                        blocks: vec![flagged(RAW, raw)],
                    }
                })
                .collect()
        }
    }
}

/// Why a block plaintext is not a chunk.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnpackError {
    /// Empty plaintext or an unknown flag.
    #[error("not a chunk (flag {0:?})")]
    BadFlag(Option<u8>),
    /// The zstd frame did not decode within the chunk size limit.
    #[error("compressed chunk does not decode: {0}")]
    Zstd(String),
    /// A frame decoded to another length than its leaf records.
    #[error("a leaf of {want} bytes decoded to {got}")]
    Length {
        /// What the pointer block says.
        want: u64,
        /// What the frame gave.
        got: usize,
    },
}

/// What one block plaintext of a stream's data holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Unpacked {
    /// A whole chunk.
    Chunk(Vec<u8>),
    /// One piece of a larger extent's frame (see [`unframe`]).
    Piece(Vec<u8>),
}

/// The chunk, or the piece of a frame, in a block plaintext.
pub fn unpack(plain: &[u8]) -> Result<Unpacked, UnpackError> {
    match plain.first() {
        Some(&RAW) => Ok(Unpacked::Chunk(plain[1..].to_vec())),
        Some(&ZSTD) => decompress(&plain[1..], MAX_CHUNK as usize).map(Unpacked::Chunk),
        Some(&PIECE) => Ok(Unpacked::Piece(plain[1..].to_vec())),
        other => Err(UnpackError::BadFlag(other.copied())),
    }
}

/// The extent whose frame is `frame` (its pieces' payloads, in order),
/// which must decode to exactly `size` bytes (at most [`MAX_EXTENT`]).
pub fn unframe(frame: &[u8], size: u64) -> Result<Vec<u8>, UnpackError> {
    let limit = size.min(u64::from(MAX_EXTENT)) as usize;
    let data = decompress(frame, limit)?;
    if data.len() as u64 != size {
        return Err(UnpackError::Length {
            want: size,
            got: data.len(),
        });
    }
    Ok(data)
}

fn decompress(frame: &[u8], limit: usize) -> Result<Vec<u8>, UnpackError> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(
                zstd::bulk::Decompressor::new().map_err(|e| UnpackError::Zstd(e.to_string()))?,
            );
        }
        d.as_mut()
            .expect("set above")
            .decompress(frame, limit)
            .map_err(|e| UnpackError::Zstd(e.to_string()))
    })
}

/// Incompressible bytes for tests (xorshift), the same for the same seed.
#[cfg(test)]
pub(crate) fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream a leaf holds, from its block plaintexts.
    fn unpack_leaf(leaf: &PackedLeaf) -> Vec<u8> {
        let mut frame = Vec::new();
        for b in &leaf.blocks {
            match unpack(b).unwrap() {
                Unpacked::Chunk(c) => {
                    assert_eq!(leaf.blocks.len(), 1, "a chunk is a leaf alone");
                    return c;
                }
                Unpacked::Piece(p) => frame.extend_from_slice(&p),
            }
        }
        unframe(&frame, leaf.size as u64).unwrap()
    }

    /// Text that zstd shrinks about threefold, unlike `noise`.
    fn text(n: usize, seed: u64) -> Vec<u8> {
        let words: Vec<&[u8]> = [
            &b"venti "[..],
            b"block ",
            b"score ",
            b"arena ",
            b"fossil ",
            b"plan9\n",
        ]
        .to_vec();
        let picks = noise(n, seed);
        picks
            .iter()
            .flat_map(|&b| words[b as usize % words.len()].iter().copied())
            .take(n)
            .collect()
    }

    #[test]
    fn every_block_fits_venti_and_every_extent_reassembles() {
        for data in [noise(3 << 20, 42), text(3 << 20, 43)] {
            let extents: Vec<Vec<u8>> = extents(&data[..], 9).map(|c| c.unwrap()).collect();
            assert_eq!(extents.concat(), data);
            let avg = data.len() / extents.len();
            assert!(
                (128 << 10..=512 << 10).contains(&avg),
                "average extent {avg}"
            );
            let mut back = Vec::new();
            for e in &extents {
                assert!(e.len() <= MAX_EXTENT as usize);
                for leaf in pack_extent(e) {
                    assert!(leaf.blocks.len() <= MAX_PIECES);
                    for b in &leaf.blocks {
                        assert!(b.len() + BLOCK_OVERHEAD <= eventi_shared::MAX_BLOCK_V02);
                    }
                    let got = unpack_leaf(&leaf);
                    assert_eq!(got.len(), leaf.size);
                    back.extend_from_slice(&got);
                }
            }
            assert_eq!(back, data);
        }
    }

    #[test]
    fn a_large_extent_is_one_leaf_of_pieces_or_equal_raw_chunks() {
        let compressible = text(600_000, 5);
        let leaves = pack_extent(&compressible);
        assert_eq!(leaves.len(), 1, "one frame");
        assert!(leaves[0].blocks.len() > 1, "a frame of several pieces");
        assert!(leaves[0].blocks.iter().all(|b| b[0] == PIECE));
        let stored: usize = leaves[0].blocks.iter().map(Vec::len).sum();
        assert!(stored < compressible.len() / 2, "{stored} bytes stored");
        assert_eq!(unpack_leaf(&leaves[0]), compressible);

        let random = noise(300_001, 3);
        let leaves = pack_extent(&random);
        let sizes: Vec<usize> = leaves.iter().map(|l| l.size).collect();
        assert_eq!(sizes, [50_001, 50_000, 50_000, 50_000, 50_000, 50_000]);
        assert!(leaves
            .iter()
            .all(|l| l.blocks.len() == 1 && l.blocks[0][0] == RAW));
        let back: Vec<u8> = leaves.iter().flat_map(unpack_leaf).collect();
        assert_eq!(back, random);
    }

    #[test]
    fn a_frame_must_decode_to_its_recorded_size() {
        let data = text(200_000, 8);
        let leaf = pack_extent(&data).remove(0);
        let frame: Vec<u8> = leaf
            .blocks
            .iter()
            .flat_map(|b| b[1..].iter().copied())
            .collect();
        assert_eq!(unframe(&frame, 200_000).unwrap(), data);
        // Less room than the frame needs, or fewer bytes than recorded.
        assert!(matches!(
            unframe(&frame, 199_999),
            Err(UnpackError::Zstd(_))
        ));
        assert_eq!(
            unframe(&frame, 200_001),
            Err(UnpackError::Length {
                want: 200_001,
                got: 200_000
            })
        );
        let missing_piece = &frame[..frame.len() - 10];
        assert!(unframe(missing_piece, 200_000).is_err());
    }

    #[test]
    fn cutting_in_memory_gives_the_streaming_extents() {
        let seed = seed_for(&[4; 32]);
        for len in [
            0,
            1,
            5000,
            MIN_EXTENT as usize - 1,
            MIN_EXTENT as usize,
            3_000_000,
        ] {
            let data = noise(len, len as u64 + 1);
            let streamed: Vec<Vec<u8>> = extents(&data[..], seed).map(|c| c.unwrap()).collect();
            let in_memory: Vec<&[u8]> = extents_in_memory(&data, seed).collect();
            assert_eq!(in_memory, streamed, "{len} bytes");
        }
    }

    #[test]
    fn an_edit_changes_only_nearby_extents() {
        let a = noise(8 << 20, 7);
        let mut b = a.clone();
        b.splice(4 << 20..4 << 20, b"inserted bytes".iter().copied());
        let seed = seed_for(&[5; 32]);
        let ea: std::collections::HashSet<Vec<u8>> =
            extents(&a[..], seed).map(|c| c.unwrap()).collect();
        let eb: Vec<Vec<u8>> = extents(&b[..], seed).map(|c| c.unwrap()).collect();
        let new = eb.iter().filter(|c| !ea.contains(*c)).count();
        assert!(
            new <= 3,
            "{new} of {} extents changed for one insertion",
            eb.len()
        );
    }

    #[test]
    fn cut_points_depend_on_the_secret() {
        let data = noise(16 << 20, 11);
        let sizes =
            |seed| -> Vec<usize> { extents(&data[..], seed).map(|c| c.unwrap().len()).collect() };
        let (a, b) = (seed_for(&[1; 32]), seed_for(&[2; 32]));
        assert_ne!(a, b);
        assert_eq!(sizes(a), sizes(a), "one secret, one cutting");
        assert_ne!(sizes(a), sizes(b), "another secret, other cut points");
        assert_ne!(sizes(a), sizes(0), "keyed differs from unkeyed");
        // Pinned: the seed derivation is part of the format.
        assert_eq!(seed_for(&[7; 32]), GOLDEN_SEED);
    }

    /// First 8 bytes of HMAC-SHA-256(32 x 0x07, "eventi chunker seed v1"),
    /// computed with Python's hmac.
    const GOLDEN_SEED: u64 = 0x8bb6_edf0_024d_d060;

    #[test]
    fn compression_only_where_it_pays() {
        let text = b"venti ".repeat(5000);
        assert_eq!(pack(&text)[0], ZSTD);
        assert!(pack(&text).len() < text.len() / 10);
        let random = noise(40_000, 3);
        let packed = pack(&random);
        assert_eq!(packed[0], RAW);
        assert_eq!(packed.len(), random.len() + 1);
        assert_eq!(unpack(&[9, 1, 2]), Err(UnpackError::BadFlag(Some(9))));
        assert!(unpack(&[ZSTD, 1, 2, 3]).is_err());
    }
}
