//! The bodies of Tprune and Rprune (eventi extension, types 72 and 73):
//! a prune of the session's own write key, in steps (status, begin, mark,
//! commit). Bytes in `docs/PROTOCOL.md`, "Prune".

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::extension::{get_bitmap, get_keys, put_bitmap, put_keys};
use super::{get_string, put_string, CodecError};
use crate::block_type::BlockType;
use crate::score::Score;

/// Most heads one commit may name (a key keeps at most 16).
pub const MAX_COMMIT_HEADS: usize = 255;

/// What a Tprune asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PruneRequest {
    /// Op 0: the key's prune state.
    Status,
    /// Op 1: start (or start over) marking.
    Begin,
    /// Op 2: mark these blocks as still needed (and take hold of them).
    Mark {
        /// At most [`super::extension::MAX_HAS`] (score, type) keys.
        keys: Vec<(Score, BlockType)>,
    },
    /// Op 3: let go of what was not marked; refused unless the key's
    /// heads are exactly these (name, sequence) pairs.
    Commit {
        /// The heads the marking walked from.
        heads: Vec<(String, u64)>,
    },
}

/// A key's prune state (the reply to status and begin).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneStatus {
    /// Raised by every commit: caches made in an older epoch may name
    /// blocks that are gone.
    pub epoch: u64,
    /// When the marking in progress began (Unix seconds; 0: none).
    pub since: u64,
    /// Bytes the key stopped paying for, over all its prunes.
    pub reclaimed_bytes: u64,
    /// The server's grace period in seconds: nothing stored or marked
    /// within it is let go.
    pub grace: u64,
    /// The key's heads on the server, (name, sequence): what a marking
    /// walks from, and what its commit names.
    pub heads: Vec<(String, u64)>,
}

/// What a commit let go of (the store's outcome, and its bytes on the
/// wire).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneCommitted {
    /// The key's epoch after it.
    pub epoch: u64,
    /// References let go of.
    pub released: u64,
    /// Blocks no key holds any more.
    pub dead_blocks: u64,
    /// Their bytes.
    pub dead_bytes: u64,
    /// Blocks other keys still hold, now charged to one of them.
    pub moved_blocks: u64,
    /// Their bytes.
    pub moved_bytes: u64,
}

/// What an Rprune answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PruneReply {
    /// Ops 0 and 1 (the op echoed).
    Status {
        /// 0 for status, 1 for begin.
        op: u8,
        /// The state.
        status: PruneStatus,
    },
    /// Op 2: one flag per block, whether it is stored.
    Marked {
        /// In the order asked.
        present: Vec<bool>,
    },
    /// Op 3.
    Committed(PruneCommitted),
}

/// `count[1] { name[s] seq[8] } * count`.
fn get_heads(body: &mut Bytes) -> Result<Vec<(String, u64)>, &'static str> {
    if body.remaining() < 1 {
        return Err("missing head count");
    }
    let count = body.get_u8() as usize;
    let mut heads = Vec::with_capacity(count);
    for _ in 0..count {
        let name = get_string(body).ok_or("bad head name")?;
        if body.remaining() < 8 {
            return Err("missing head sequence");
        }
        heads.push((name, body.get_u64()));
    }
    Ok(heads)
}

/// Appends what [`get_heads`] reads.
fn put_heads(heads: &[(String, u64)], out: &mut BytesMut) -> Result<(), CodecError> {
    if heads.len() > MAX_COMMIT_HEADS {
        return Err(CodecError::TooManyScores(heads.len()));
    }
    out.put_u8(heads.len() as u8);
    for (name, seq) in heads {
        put_string(out, name)?;
        out.put_u64(*seq);
    }
    Ok(())
}

/// Decodes a Tprune body.
pub(super) fn decode_request(body: &mut Bytes) -> Result<PruneRequest, &'static str> {
    if body.remaining() < 1 {
        return Err("missing op");
    }
    Ok(match body.get_u8() {
        0 => PruneRequest::Status,
        1 => PruneRequest::Begin,
        2 => PruneRequest::Mark {
            keys: get_keys(body)?,
        },
        3 => PruneRequest::Commit {
            heads: get_heads(body)?,
        },
        _ => return Err("unknown prune op"),
    })
}

/// Decodes an Rprune body.
pub(super) fn decode_reply(body: &mut Bytes) -> Result<PruneReply, &'static str> {
    if body.remaining() < 1 {
        return Err("missing op");
    }
    let op = body.get_u8();
    let numbers = |body: &mut Bytes, n: usize| -> Result<Vec<u64>, &'static str> {
        if body.remaining() != n * 8 {
            return Err("wrong length for its op");
        }
        Ok((0..n).map(|_| body.get_u64()).collect())
    };
    Ok(match op {
        0 | 1 => {
            if body.remaining() < 32 {
                return Err("needs epoch[8] since[8] reclaimed[8] grace[8] heads");
            }
            let v: Vec<u64> = (0..4).map(|_| body.get_u64()).collect();
            PruneReply::Status {
                op,
                status: PruneStatus {
                    epoch: v[0],
                    since: v[1],
                    reclaimed_bytes: v[2],
                    grace: v[3],
                    heads: get_heads(body)?,
                },
            }
        }
        2 => PruneReply::Marked {
            present: get_bitmap(body)?,
        },
        3 => {
            let v = numbers(body, 6)?;
            PruneReply::Committed(PruneCommitted {
                epoch: v[0],
                released: v[1],
                dead_blocks: v[2],
                dead_bytes: v[3],
                moved_blocks: v[4],
                moved_bytes: v[5],
            })
        }
        _ => return Err("unknown prune op"),
    })
}

/// Appends a Tprune body.
pub(super) fn encode_request(request: &PruneRequest, out: &mut BytesMut) -> Result<(), CodecError> {
    match request {
        PruneRequest::Status => out.put_u8(0),
        PruneRequest::Begin => out.put_u8(1),
        PruneRequest::Mark { keys } => {
            out.put_u8(2);
            put_keys(keys, out)?;
        }
        PruneRequest::Commit { heads } => {
            out.put_u8(3);
            put_heads(heads, out)?;
        }
    }
    Ok(())
}

/// Appends an Rprune body.
pub(super) fn encode_reply(reply: &PruneReply, out: &mut BytesMut) -> Result<(), CodecError> {
    match reply {
        PruneReply::Status { op, status } => {
            out.put_u8(*op);
            for n in [
                status.epoch,
                status.since,
                status.reclaimed_bytes,
                status.grace,
            ] {
                out.put_u64(n);
            }
            put_heads(&status.heads, out)?;
        }
        PruneReply::Marked { present } => {
            out.put_u8(2);
            put_bitmap(present, out)?;
        }
        PruneReply::Committed(c) => {
            out.put_u8(3);
            for n in [
                c.epoch,
                c.released,
                c.dead_blocks,
                c.dead_bytes,
                c.moved_blocks,
                c.moved_bytes,
            ] {
                out.put_u64(n);
            }
        }
    }
    Ok(())
}
