//! Content-defined chunking and compression, sized so that every chunk
//! fits one venti block (56 KiB on protocol 02, the limit any venti
//! server honours).
//!
//! A block's plaintext is `flag[1]` + payload, `flag` 0 for a raw chunk,
//! 1 for a zstd frame; encryption adds a 16-byte tag (`block.rs`). So the
//! largest chunk is 57,344 - 17 bytes, and compression is kept only when
//! it saves at least 1/32 of the chunk: already-compressed data costs one
//! flag byte, never more.
//!
//! FastCDC (2020) with 16 KiB minimum, 32 KiB average, 57,280-byte
//! maximum: the average is as large as the block limit allows while
//! leaving CDC room to vary (cut points can land up to ~1.8x the average),
//! and the minimum avoids a swarm of tiny blocks.

use std::io::Read;

use crate::format::block::BLOCK_OVERHEAD;

/// Smallest chunk (except a file's last).
pub const MIN_CHUNK: u32 = 16 * 1024;
/// Target average chunk.
pub const AVG_CHUNK: u32 = 32 * 1024;
/// Largest chunk: a raw chunk plus its flag and tag still fit 56 KiB.
pub const MAX_CHUNK: u32 = (eventi_shared::MAX_BLOCK_V02 - 1 - BLOCK_OVERHEAD - 47) as u32;

const RAW: u8 = 0;
const ZSTD: u8 = 1;
const ZSTD_LEVEL: i32 = 2;

/// Label of the chunker seed's derivation.
const SEED_LABEL: &[u8] = b"eventi chunker seed v1";

/// The chunker seed for a convergence secret: the first 8 bytes (big
/// endian) of HMAC-SHA-256(secret, "eventi chunker seed v1"). FastCDC's
/// gear table is XORed with it, so cut points, hence chunk sizes, depend
/// on the secret: a store that knows a file cannot look for its chunk
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

/// Splits a stream into content-defined chunks, cut points keyed by `seed`.
pub fn chunks<R: Read>(source: R, seed: u64) -> impl Iterator<Item = std::io::Result<Vec<u8>>> {
    fastcdc::v2020::StreamCDC::with_level_and_seed(
        source,
        MIN_CHUNK,
        AVG_CHUNK,
        MAX_CHUNK,
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

/// The chunks of a content held whole in memory: exactly what [`chunks`]
/// gives for it. Below [`MIN_CHUNK`] that is the content itself (no cut
/// point can come before the minimum), found without the streaming
/// chunker, which zeroes a buffer of [`MAX_CHUNK`] bytes for every file:
/// most files of a tree are that small.
pub fn split_in_memory(data: Vec<u8>, seed: u64) -> Vec<Vec<u8>> {
    if data.is_empty() {
        Vec::new()
    } else if data.len() < MIN_CHUNK as usize {
        vec![data]
    } else {
        chunks(&data[..], seed)
            .map(|c| c.expect("reading memory cannot fail"))
            .collect()
    }
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

/// A chunk as a block plaintext: compressed if that pays, else raw.
pub fn pack(chunk: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + chunk.len());
    out.push(ZSTD);
    // Compress straight into `out`, bounded so that an incompressible
    // chunk fails fast instead of being kept.
    out.resize(1 + chunk.len() - chunk.len() / 32, 0);
    let compressed = COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
        }
        c.as_mut()
            .and_then(|c| c.compress_to_buffer(chunk, &mut out[1..]).ok())
    });
    match compressed {
        Some(n) if n + n / 32 < chunk.len() => {
            out.truncate(1 + n);
            out
        }
        _ => {
            out.clear();
            out.push(RAW);
            out.extend_from_slice(chunk);
            out
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
}

/// The chunk in a block plaintext.
pub fn unpack(plain: &[u8]) -> Result<Vec<u8>, UnpackError> {
    match plain.first() {
        Some(&RAW) => Ok(plain[1..].to_vec()),
        Some(&ZSTD) => DECOMPRESSOR.with(|d| {
            let mut d = d.borrow_mut();
            if d.is_none() {
                *d = Some(
                    zstd::bulk::Decompressor::new()
                        .map_err(|e| UnpackError::Zstd(e.to_string()))?,
                );
            }
            d.as_mut()
                .expect("set above")
                .decompress(&plain[1..], MAX_CHUNK as usize)
                .map_err(|e| UnpackError::Zstd(e.to_string()))
        }),
        other => Err(UnpackError::BadFlag(other.copied())),
    }
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

    #[test]
    fn every_chunk_fits_a_venti_block_and_reassembles() {
        let data = noise(3 << 20, 42);
        let parts: Vec<Vec<u8>> = chunks(&data[..], 0).map(|c| c.unwrap()).collect();
        assert_eq!(parts.concat(), data);
        for p in &parts {
            assert!(p.len() <= MAX_CHUNK as usize);
            let packed = pack(p);
            assert!(packed.len() + BLOCK_OVERHEAD <= eventi_shared::MAX_BLOCK_V02);
            assert_eq!(unpack(&packed).unwrap(), *p);
        }
        let avg = data.len() / parts.len();
        assert!((16 << 10..=48 << 10).contains(&avg), "average chunk {avg}");
    }

    #[test]
    fn splitting_in_memory_gives_the_streaming_chunks() {
        let seed = seed_for(&[4; 32]);
        for len in [
            0,
            1,
            5000,
            MIN_CHUNK as usize - 1,
            MIN_CHUNK as usize,
            300_000,
        ] {
            let data = noise(len, len as u64 + 1);
            let streamed: Vec<Vec<u8>> = chunks(&data[..], seed).map(|c| c.unwrap()).collect();
            assert_eq!(split_in_memory(data, seed), streamed, "{len} bytes");
        }
    }

    #[test]
    fn an_edit_changes_only_nearby_chunks() {
        let a = noise(2 << 20, 7);
        let mut b = a.clone();
        b.splice(1 << 20..1 << 20, b"inserted bytes".iter().copied());
        let seed = seed_for(&[5; 32]);
        let ca: std::collections::HashSet<Vec<u8>> =
            chunks(&a[..], seed).map(|c| c.unwrap()).collect();
        let cb: Vec<Vec<u8>> = chunks(&b[..], seed).map(|c| c.unwrap()).collect();
        let new = cb.iter().filter(|c| !ca.contains(*c)).count();
        assert!(
            new <= 3,
            "{new} of {} chunks changed for one insertion",
            cb.len()
        );
    }

    #[test]
    fn cut_points_depend_on_the_secret() {
        let data = noise(4 << 20, 11);
        let sizes =
            |seed| -> Vec<usize> { chunks(&data[..], seed).map(|c| c.unwrap().len()).collect() };
        let (a, b) = (seed_for(&[1; 32]), seed_for(&[2; 32]));
        assert_ne!(a, b);
        assert_eq!(sizes(a), sizes(a), "one secret, one chunking");
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
