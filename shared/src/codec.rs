//! Venti messages and their framing, as a pure codec.
//!
//! A frame is a big-endian length (2 bytes for `02`, 4 for `04`, not
//! counting itself) followed by `type[1] tag[1] body`. Bodies follow
//! plan9port's `src/libventi/fcall.c`; the message table is in venti(7).
//! This module never touches a socket: [`FrameDecoder`] splits frames out of
//! a buffer, [`decode_body`] turns one into a [`Frame`], [`encode_frame`]
//! appends one to a buffer.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::block_type::BlockType;
use crate::score::Score;
use crate::version::Version;
use crate::MAX_STRING;

/// Numeric message types (venti(7)).
pub mod msg_type {
    #![allow(missing_docs)]
    pub const RERROR: u8 = 1;
    pub const TPING: u8 = 2;
    pub const RPING: u8 = 3;
    pub const THELLO: u8 = 4;
    pub const RHELLO: u8 = 5;
    pub const TGOODBYE: u8 = 6;
    pub const RGOODBYE: u8 = 7;
    pub const TAUTH0: u8 = 8;
    pub const RAUTH0: u8 = 9;
    pub const TAUTH1: u8 = 10;
    pub const RAUTH1: u8 = 11;
    pub const TREAD: u8 = 12;
    pub const RREAD: u8 = 13;
    pub const TWRITE: u8 = 14;
    pub const RWRITE: u8 = 15;
    pub const TSYNC: u8 = 16;
    pub const RSYNC: u8 = 17;
    // eventi's extensions (see `extension`).
    pub const THAS: u8 = 64;
    pub const RHAS: u8 = 65;
    pub const TKEYINFO: u8 = 66;
    pub const RKEYINFO: u8 = 67;
    pub const THEADGET: u8 = 68;
    pub const RHEADGET: u8 = 69;
    pub const THEADSET: u8 = 70;
    pub const RHEADSET: u8 = 71;
    pub const TPRUNE: u8 = 72;
    pub const RPRUNE: u8 = 73;
}

pub mod extension;
pub mod prune;

/// One venti message, without its tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// The reply to any request that failed, with a human-readable reason.
    Rerror {
        /// What went wrong.
        error: String,
    },
    /// Liveness check.
    Tping,
    /// Reply to [`Message::Tping`].
    Rping,
    /// First message of a session: must use tag 0 and the negotiated version.
    Thello {
        /// The negotiated version string ("02" or "04").
        version: String,
        /// The user name; advisory in plain venti.
        uid: String,
        /// Requested strength (unused by every implementation).
        strength: u8,
        /// Offered crypto suites (unused).
        crypto: Bytes,
        /// Offered codecs (unused).
        codec: Bytes,
    },
    /// Reply to [`Message::Thello`].
    Rhello {
        /// Session id; libventi's server says "anonymous".
        sid: String,
        /// Chosen crypto suite (unused).
        rcrypto: u8,
        /// Chosen codec (unused).
        rcodec: u8,
    },
    /// End of session: no reply, the server closes the connection.
    Tgoodbye,
    /// eventi's write-key authentication (see `auth`): a public key and
    /// its signature over this session's transcript. On venti's reserved
    /// type 8.
    Tauth0 {
        /// Ed25519 public key.
        key: [u8; 32],
        /// Ed25519 signature over `auth::transcript`.
        signature: [u8; 64],
    },
    /// Reply to [`Message::Tauth0`]: the key is accepted for this session.
    Rauth0,
    /// Read the block (score, type) if it holds at most `count` bytes.
    Tread {
        /// Address of the block.
        score: Score,
        /// Its type; (score, type) is the key.
        block_type: BlockType,
        /// Largest block the reader accepts. Encoded in 2 bytes when it fits,
        /// else 4 (as libventi does; the frame length tells which).
        count: u32,
    },
    /// Reply to [`Message::Tread`]: the whole block.
    Rread {
        /// The block's bytes.
        data: Bytes,
    },
    /// Store a block; the server computes its score.
    Twrite {
        /// The block's type.
        block_type: BlockType,
        /// The block's bytes.
        data: Bytes,
    },
    /// Reply to [`Message::Twrite`]: the block's score.
    Rwrite {
        /// SHA-1 of the written bytes.
        score: Score,
    },
    /// Answered once every earlier write is on stable storage.
    Tsync,
    /// Reply to [`Message::Tsync`].
    Rsync,
    /// eventi extension: which of these blocks does the server hold?
    /// (Without reading them: `eventi check`.)
    Thas {
        /// At most [`extension::MAX_HAS`] (score, type) keys.
        keys: Vec<(Score, BlockType)>,
    },
    /// Reply to [`Message::Thas`]: one flag per key asked about, in order.
    Rhas {
        /// Whether each is stored.
        present: Vec<bool>,
    },
    /// eventi extension: the session's write key as the server sees it.
    Tkeyinfo,
    /// Reply to [`Message::Tkeyinfo`].
    Rkeyinfo {
        /// The key's name on the server (`anonymous` before auth).
        name: String,
        /// Its quota in bytes (`u64::MAX`: none set; 0: may not write).
        quota: u64,
        /// Bytes it has stored.
        used: u64,
        /// Blocks it has stored.
        blocks: u64,
    },
    /// eventi extension: head `name` of write key `key` (anyone may ask).
    Theadget {
        /// The Ed25519 public key whose head it is.
        key: [u8; 32],
        /// The head's name.
        name: String,
    },
    /// Reply to [`Message::Theadget`]: the head, if the server has one.
    Rheadget {
        /// The stored head.
        head: Option<crate::head::SignedHead>,
    },
    /// eventi extension: set head `name` of the session's write key; the
    /// server keeps it only if it verifies and its sequence is higher.
    Theadset {
        /// The head's name.
        name: String,
        /// The new head.
        head: crate::head::SignedHead,
        /// The key's prune epoch the snapshot was made in: the server
        /// refuses the head if a prune has committed since (absent: no
        /// check, as from clients before prune).
        epoch: Option<u64>,
    },
    /// Reply to [`Message::Theadset`]: stored.
    Rheadset,
    /// eventi extension: a step of a prune of the session's own key.
    Tprune {
        /// The step.
        request: prune::PruneRequest,
    },
    /// Reply to [`Message::Tprune`].
    Rprune {
        /// What the step answers.
        reply: prune::PruneReply,
    },
}

impl Message {
    /// The message's numeric type.
    pub fn msg_type(&self) -> u8 {
        use msg_type::*;
        match self {
            Message::Rerror { .. } => RERROR,
            Message::Tping => TPING,
            Message::Rping => RPING,
            Message::Thello { .. } => THELLO,
            Message::Rhello { .. } => RHELLO,
            Message::Tgoodbye => TGOODBYE,
            Message::Tauth0 { .. } => TAUTH0,
            Message::Rauth0 => RAUTH0,
            Message::Tread { .. } => TREAD,
            Message::Rread { .. } => RREAD,
            Message::Twrite { .. } => TWRITE,
            Message::Rwrite { .. } => RWRITE,
            Message::Tsync => TSYNC,
            Message::Rsync => RSYNC,
            Message::Thas { .. } => THAS,
            Message::Rhas { .. } => RHAS,
            Message::Tkeyinfo => TKEYINFO,
            Message::Rkeyinfo { .. } => RKEYINFO,
            Message::Theadget { .. } => THEADGET,
            Message::Rheadget { .. } => RHEADGET,
            Message::Theadset { .. } => THEADSET,
            Message::Rheadset => RHEADSET,
            Message::Tprune { .. } => TPRUNE,
            Message::Rprune { .. } => RPRUNE,
        }
    }

    /// A short lowercase name of the message type, for logs and metrics.
    pub fn name(&self) -> &'static str {
        type_name(self.msg_type())
    }
}

/// A short lowercase name for a numeric message type, for logs and metrics.
pub fn type_name(t: u8) -> &'static str {
    use msg_type::*;
    match t {
        RERROR => "rerror",
        TPING => "ping",
        RPING => "rping",
        THELLO => "hello",
        RHELLO => "rhello",
        TGOODBYE => "goodbye",
        RGOODBYE => "rgoodbye",
        TAUTH0 => "auth0",
        RAUTH0 => "rauth0",
        TAUTH1 => "auth1",
        RAUTH1 => "rauth1",
        TREAD => "read",
        RREAD => "rread",
        TWRITE => "write",
        RWRITE => "rwrite",
        TSYNC => "sync",
        RSYNC => "rsync",
        THAS => "has",
        RHAS => "rhas",
        TKEYINFO => "keyinfo",
        RKEYINFO => "rkeyinfo",
        THEADGET => "headget",
        RHEADGET => "rheadget",
        THEADSET => "headset",
        RHEADSET => "rheadset",
        TPRUNE => "prune",
        RPRUNE => "rprune",
        _ => "unknown",
    }
}

/// A message with the tag that pairs a reply with its request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The request's tag, echoed in its reply.
    pub tag: u8,
    /// The message.
    pub message: Message,
}

/// Why bytes could not be decoded or a message could not be encoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// A frame body shorter than `type[1] tag[1]`.
    #[error("frame of {0} bytes is too short for a message header")]
    Truncated(usize),
    /// A message type this codec does not know (tag kept for the Rerror).
    #[error("unknown message type {msg_type}")]
    UnknownType {
        /// The type byte.
        msg_type: u8,
        /// The tag, so a server can still answer.
        tag: u8,
    },
    /// A known type whose body does not parse (tag kept for the Rerror).
    #[error("bad {} message: {reason}", type_name(*msg_type))]
    Malformed {
        /// The type byte.
        msg_type: u8,
        /// The tag, so a server can still answer.
        tag: u8,
        /// What was wrong.
        reason: &'static str,
    },
    /// A frame length over the limit set for this connection.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A string over [`MAX_STRING`] bytes on encode.
    #[error("string of {0} bytes exceeds the protocol limit of {MAX_STRING}")]
    StringTooLong(usize),
    /// A message too large for the `02` framing's 2-byte length.
    #[error("message of {0} bytes does not fit protocol 02's 2-byte length")]
    TooLargeForV02(usize),
    /// A Thas or Rhas over [`extension::MAX_HAS`] keys on encode.
    #[error("{0} scores in one presence query; at most {max}", max = extension::MAX_HAS)]
    TooManyScores(usize),
}

impl CodecError {
    /// The tag of the offending request, where the bytes got that far.
    pub fn tag(&self) -> Option<u8> {
        match self {
            CodecError::UnknownType { tag, .. } | CodecError::Malformed { tag, .. } => Some(*tag),
            _ => None,
        }
    }
}

/// Splits complete frame bodies out of a receive buffer.
#[derive(Clone, Copy, Debug)]
pub struct FrameDecoder {
    version: Version,
    max_frame: usize,
}

impl FrameDecoder {
    /// A decoder for `version` that refuses frames longer than `max_frame`
    /// (the length prefix not counted). For `02` the framing itself caps
    /// frames at 65535 bytes.
    pub fn new(version: Version, max_frame: usize) -> Self {
        FrameDecoder { version, max_frame }
    }

    /// Whether [`FrameDecoder::decode`] would return something other than
    /// "need more bytes" (a whole frame, or an error for an oversized one).
    pub fn frame_ready(&self, buf: &[u8]) -> bool {
        let prefix = self.version.length_prefix_size();
        if buf.len() < prefix {
            return false;
        }
        let len = match self.version {
            Version::V02 => u16::from_be_bytes([buf[0], buf[1]]) as usize,
            Version::V04 => u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize,
        };
        len > self.max_frame || buf.len() >= prefix + len
    }

    /// Takes the next complete frame body (`type tag body`) off the front of
    /// `buf`, or returns `None` if more bytes are needed. A frame over the
    /// limit is an error and leaves the connection unusable.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        let prefix = self.version.length_prefix_size();
        if buf.len() < prefix {
            return Ok(None);
        }
        let len = match self.version {
            Version::V02 => u16::from_be_bytes([buf[0], buf[1]]) as usize,
            Version::V04 => u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize,
        };
        if len > self.max_frame {
            return Err(CodecError::FrameTooLarge {
                len,
                max: self.max_frame,
            });
        }
        if buf.len() < prefix + len {
            buf.reserve(prefix + len - buf.len());
            return Ok(None);
        }
        buf.advance(prefix);
        Ok(Some(buf.split_to(len).freeze()))
    }
}

/// Decodes one frame body (`type[1] tag[1] body`). Trailing bytes are an
/// error, as in libventi.
pub fn decode_body(mut body: Bytes) -> Result<Frame, CodecError> {
    use msg_type::*;
    if body.len() < 2 {
        return Err(CodecError::Truncated(body.len()));
    }
    let msg_type = body.get_u8();
    let tag = body.get_u8();
    let bad = |reason| CodecError::Malformed {
        msg_type,
        tag,
        reason,
    };
    let message = match msg_type {
        RERROR => Message::Rerror {
            error: get_string(&mut body).ok_or(bad("bad error string"))?,
        },
        TPING => Message::Tping,
        RPING => Message::Rping,
        THELLO => {
            let version = get_string(&mut body).ok_or(bad("bad version string"))?;
            let uid = get_string(&mut body).ok_or(bad("bad uid string"))?;
            if body.remaining() < 1 {
                return Err(bad("missing strength"));
            }
            let strength = body.get_u8();
            let crypto = get_param(&mut body).ok_or(bad("bad crypto parameter"))?;
            let codec = get_param(&mut body).ok_or(bad("bad codec parameter"))?;
            Message::Thello {
                version,
                uid,
                strength,
                crypto,
                codec,
            }
        }
        RHELLO => {
            let sid = get_string(&mut body).ok_or(bad("bad sid string"))?;
            if body.remaining() < 2 {
                return Err(bad("missing rcrypto/rcodec"));
            }
            Message::Rhello {
                sid,
                rcrypto: body.get_u8(),
                rcodec: body.get_u8(),
            }
        }
        TGOODBYE => Message::Tgoodbye,
        TAUTH0 => {
            if body.remaining() < 96 {
                return Err(bad("Tauth0 needs key[32] signature[64]"));
            }
            let mut key = [0u8; 32];
            let mut signature = [0u8; 64];
            body.copy_to_slice(&mut key);
            body.copy_to_slice(&mut signature);
            Message::Tauth0 { key, signature }
        }
        RAUTH0 => Message::Rauth0,
        TREAD => {
            if body.remaining() < Score::LEN + 2 {
                return Err(bad("too short"));
            }
            let score = Score::from_slice(&body.split_to(Score::LEN)).expect("20 bytes");
            let block_type = BlockType::from_wire(body.get_u8()).ok_or(bad("bad block type"))?;
            let _pad = body.get_u8();
            let count = match body.remaining() {
                2 => body.get_u16() as u32,
                4 => body.get_u32(),
                _ => return Err(bad("count must be 2 or 4 bytes")),
            };
            Message::Tread {
                score,
                block_type,
                count,
            }
        }
        RREAD => Message::Rread {
            data: std::mem::take(&mut body),
        },
        TWRITE => {
            if body.remaining() < 4 {
                return Err(bad("too short"));
            }
            let block_type = BlockType::from_wire(body.get_u8()).ok_or(bad("bad block type"))?;
            body.advance(3);
            Message::Twrite {
                block_type,
                data: std::mem::take(&mut body),
            }
        }
        RWRITE => {
            if body.remaining() < Score::LEN {
                return Err(bad("too short"));
            }
            Message::Rwrite {
                score: Score::from_slice(&body.split_to(Score::LEN)).expect("20 bytes"),
            }
        }
        TSYNC => Message::Tsync,
        RSYNC => Message::Rsync,
        _ => match extension::decode(msg_type, &mut body) {
            Some(decoded) => decoded.map_err(bad)?,
            None => return Err(CodecError::UnknownType { msg_type, tag }),
        },
    };
    if body.has_remaining() {
        return Err(bad("trailing bytes"));
    }
    Ok(Frame { tag, message })
}

/// Appends `message` with `tag` to `out` as one frame for `version`.
/// On error nothing is appended.
pub fn encode_frame(
    version: Version,
    tag: u8,
    message: &Message,
    out: &mut BytesMut,
) -> Result<(), CodecError> {
    let start = out.len();
    let prefix = version.length_prefix_size();
    out.put_bytes(0, prefix);
    if let Err(e) = encode_body(tag, message, out) {
        out.truncate(start);
        return Err(e);
    }
    let len = out.len() - start - prefix;
    match version {
        Version::V02 => {
            if len > u16::MAX as usize {
                out.truncate(start);
                return Err(CodecError::TooLargeForV02(len));
            }
            out[start..start + 2].copy_from_slice(&(len as u16).to_be_bytes());
        }
        Version::V04 => {
            out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
        }
    }
    Ok(())
}

fn encode_body(tag: u8, message: &Message, out: &mut BytesMut) -> Result<(), CodecError> {
    out.put_u8(message.msg_type());
    out.put_u8(tag);
    match message {
        Message::Rerror { error } => put_string(out, error)?,
        Message::Tping
        | Message::Rping
        | Message::Tgoodbye
        | Message::Rauth0
        | Message::Tsync
        | Message::Rsync => {}
        Message::Tauth0 { key, signature } => {
            out.put_slice(key);
            out.put_slice(signature);
        }
        Message::Thello {
            version,
            uid,
            strength,
            crypto,
            codec,
        } => {
            put_string(out, version)?;
            put_string(out, uid)?;
            out.put_u8(*strength);
            put_param(out, crypto)?;
            put_param(out, codec)?;
        }
        Message::Rhello {
            sid,
            rcrypto,
            rcodec,
        } => {
            put_string(out, sid)?;
            out.put_u8(*rcrypto);
            out.put_u8(*rcodec);
        }
        Message::Tread {
            score,
            block_type,
            count,
        } => {
            out.put_slice(score.as_bytes());
            out.put_u8(block_type.to_wire());
            out.put_u8(0);
            if *count > u16::MAX as u32 {
                out.put_u32(*count);
            } else {
                out.put_u16(*count as u16);
            }
        }
        Message::Rread { data } => out.put_slice(data),
        Message::Twrite { block_type, data } => {
            out.put_u8(block_type.to_wire());
            out.put_bytes(0, 3);
            out.put_slice(data);
        }
        Message::Rwrite { score } => out.put_slice(score.as_bytes()),
        other => {
            let encoded = extension::encode(other, out)?;
            debug_assert!(encoded, "every message kind has an encoder");
        }
    }
    Ok(())
}

fn get_string(body: &mut Bytes) -> Option<String> {
    if body.remaining() < 2 {
        return None;
    }
    let n = body.get_u16() as usize;
    if n > MAX_STRING || body.remaining() < n {
        return None;
    }
    // libventi does not check encodings; keep whatever a C client sent.
    Some(String::from_utf8_lossy(&body.split_to(n)).into_owned())
}

fn get_param(body: &mut Bytes) -> Option<Bytes> {
    if body.remaining() < 1 {
        return None;
    }
    let n = body.get_u8() as usize;
    (body.remaining() >= n).then(|| body.split_to(n))
}

fn put_string(out: &mut BytesMut, s: &str) -> Result<(), CodecError> {
    if s.len() > MAX_STRING {
        return Err(CodecError::StringTooLong(s.len()));
    }
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
    Ok(())
}

fn put_param(out: &mut BytesMut, p: &[u8]) -> Result<(), CodecError> {
    let n = u8::try_from(p.len()).map_err(|_| CodecError::StringTooLong(p.len()))?;
    out.put_u8(n);
    out.put_slice(p);
    Ok(())
}

#[cfg(test)]
mod tests;
