//! The bodies of eventi's extension messages (types 64 and up, far from
//! venti's 1..17). A client sends them only to a server whose Rhello sid
//! shows eventi's write-key challenge, and treats `unknown request` as
//! "this server does not have it", so plan9port's tools and servers never
//! see one. The bytes are in `docs/PROTOCOL.md`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{get_string, put_string, CodecError, Message};
use crate::block_type::BlockType;
use crate::head::{SignedHead, HEAD_LEN};
use crate::score::Score;

/// Most (score, type) pairs one Thas may ask about: 21 KiB of request,
/// well inside protocol 02's 64 KiB frame.
pub const MAX_HAS: usize = 1024;

/// Decodes the body of extension message `msg_type` (the caller maps the
/// reason to [`CodecError::Malformed`]); `None` for a type that is not
/// an extension.
pub(super) fn decode(msg_type: u8, body: &mut Bytes) -> Option<Result<Message, &'static str>> {
    use super::msg_type::*;
    Some(match msg_type {
        THAS => decode_has(body),
        RHAS => decode_rhas(body),
        TKEYINFO => Ok(Message::Tkeyinfo),
        RKEYINFO => decode_rkeyinfo(body),
        THEADGET => decode_headget(body),
        RHEADGET => decode_rheadget(body),
        THEADSET => decode_headset(body),
        RHEADSET => Ok(Message::Rheadset),
        TPRUNE => super::prune::decode_request(body).map(|request| Message::Tprune { request }),
        RPRUNE => super::prune::decode_reply(body).map(|reply| Message::Rprune { reply }),
        _ => return None,
    })
}

fn decode_has(body: &mut Bytes) -> Result<Message, &'static str> {
    Ok(Message::Thas {
        keys: get_keys(body)?,
    })
}

fn decode_rhas(body: &mut Bytes) -> Result<Message, &'static str> {
    Ok(Message::Rhas {
        present: get_bitmap(body)?,
    })
}

/// `count[2] { score[20] type[1] } * count`, at most [`MAX_HAS`].
pub(super) fn get_keys(body: &mut Bytes) -> Result<Vec<(Score, BlockType)>, &'static str> {
    if body.remaining() < 2 {
        return Err("missing count");
    }
    let count = body.get_u16() as usize;
    if count > MAX_HAS {
        return Err("more than 1024 scores");
    }
    if body.remaining() != count * (Score::LEN + 1) {
        return Err("count does not match the scores given");
    }
    (0..count)
        .map(|_| {
            let score = Score::from_slice(&body.split_to(Score::LEN)).expect("20 bytes");
            let block_type = BlockType::from_wire(body.get_u8()).ok_or("bad block type")?;
            Ok((score, block_type))
        })
        .collect()
}

/// `count[2] present[(count + 7) / 8]`, least significant bit first.
pub(super) fn get_bitmap(body: &mut Bytes) -> Result<Vec<bool>, &'static str> {
    if body.remaining() < 2 {
        return Err("missing count");
    }
    let count = body.get_u16() as usize;
    if count > MAX_HAS || body.remaining() != count.div_ceil(8) {
        return Err("bitmap does not match the count");
    }
    let bits = body.split_to(count.div_ceil(8));
    Ok((0..count)
        .map(|i| bits[i / 8] & (1 << (i % 8)) != 0)
        .collect())
}

/// Appends what [`get_keys`] reads.
pub(super) fn put_keys(keys: &[(Score, BlockType)], out: &mut BytesMut) -> Result<(), CodecError> {
    if keys.len() > MAX_HAS {
        return Err(CodecError::TooManyScores(keys.len()));
    }
    out.put_u16(keys.len() as u16);
    for (score, block_type) in keys {
        out.put_slice(score.as_bytes());
        out.put_u8(block_type.to_wire());
    }
    Ok(())
}

/// Appends what [`get_bitmap`] reads.
pub(super) fn put_bitmap(present: &[bool], out: &mut BytesMut) -> Result<(), CodecError> {
    if present.len() > MAX_HAS {
        return Err(CodecError::TooManyScores(present.len()));
    }
    out.put_u16(present.len() as u16);
    let mut bits = vec![0u8; present.len().div_ceil(8)];
    for (i, &p) in present.iter().enumerate() {
        if p {
            bits[i / 8] |= 1 << (i % 8);
        }
    }
    out.put_slice(&bits);
    Ok(())
}

fn decode_rkeyinfo(body: &mut Bytes) -> Result<Message, &'static str> {
    let name = get_string(body).ok_or("bad name string")?;
    if body.remaining() != 24 {
        return Err("needs quota[8] used[8] blocks[8]");
    }
    Ok(Message::Rkeyinfo {
        name,
        quota: body.get_u64(),
        used: body.get_u64(),
        blocks: body.get_u64(),
    })
}

fn decode_headget(body: &mut Bytes) -> Result<Message, &'static str> {
    if body.remaining() < 32 {
        return Err("needs key[32] name[s]");
    }
    let mut key = [0u8; 32];
    body.copy_to_slice(&mut key);
    let name = get_string(body).ok_or("bad name string")?;
    Ok(Message::Theadget { key, name })
}

fn get_head(body: &mut Bytes) -> Result<SignedHead, &'static str> {
    if body.remaining() < HEAD_LEN {
        return Err("needs root[20] seq[8] signature[64]");
    }
    SignedHead::from_bytes(&body.split_to(HEAD_LEN)).ok_or("bad head")
}

fn decode_rheadget(body: &mut Bytes) -> Result<Message, &'static str> {
    if body.remaining() < 1 {
        return Err("missing found flag");
    }
    let head = match body.get_u8() {
        0 => None,
        1 => Some(get_head(body)?),
        _ => return Err("found flag must be 0 or 1"),
    };
    Ok(Message::Rheadget { head })
}

fn decode_headset(body: &mut Bytes) -> Result<Message, &'static str> {
    let name = get_string(body).ok_or("bad name string")?;
    let head = get_head(body)?;
    let epoch = match body.remaining() {
        0 => None,
        8 => Some(body.get_u64()),
        _ => return Err("trailing bytes after the head (an epoch is 8 bytes)"),
    };
    Ok(Message::Theadset { name, head, epoch })
}

/// Appends the body of an extension message; `false` for one that is not.
pub(super) fn encode(message: &Message, out: &mut BytesMut) -> Result<bool, CodecError> {
    match message {
        Message::Thas { keys } => put_keys(keys, out)?,
        Message::Rhas { present } => put_bitmap(present, out)?,
        Message::Tkeyinfo => {}
        Message::Rkeyinfo {
            name,
            quota,
            used,
            blocks,
        } => {
            put_string(out, name)?;
            out.put_u64(*quota);
            out.put_u64(*used);
            out.put_u64(*blocks);
        }
        Message::Theadget { key, name } => {
            out.put_slice(key);
            put_string(out, name)?;
        }
        Message::Rheadget { head } => match head {
            None => out.put_u8(0),
            Some(h) => {
                out.put_u8(1);
                out.put_slice(&h.to_bytes());
            }
        },
        Message::Theadset { name, head, epoch } => {
            put_string(out, name)?;
            out.put_slice(&head.to_bytes());
            if let Some(epoch) = epoch {
                out.put_u64(*epoch);
            }
        }
        Message::Rheadset => {}
        Message::Tprune { request } => super::prune::encode_request(request, out)?,
        Message::Rprune { reply } => super::prune::encode_reply(reply, out)?,
        _ => return Ok(false),
    }
    Ok(true)
}
