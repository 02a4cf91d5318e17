//! 9P2000 (and 9P2000.u) messages as bytes: a pure codec, no I/O. Every
//! message is `size[4] type[1] tag[2]` and its fields, little-endian;
//! strings are `len[2]` + UTF-8 (names are taken as bytes). The messages
//! themselves are in `messages`.

use crate::ninep::messages::{Qid, Request, Rmsg, Stat, Tmsg, MAXWELEM};

/// Why a message did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame ends before a field does.
    #[error("message truncated")]
    Truncated,
    /// The size field disagrees with the frame.
    #[error("message size {0} does not match its frame")]
    Size(u32),
    /// A type this codec does not know (or a reply's type).
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// A string is not UTF-8.
    #[error("a string field is not UTF-8")]
    NotUtf8,
    /// A walk with more than [`MAXWELEM`] names.
    #[error("walk of {0} names (at most 16)")]
    TooManyNames(u16),
    /// Bytes left after the last field.
    #[error("{0} bytes after the last field")]
    Trailing(usize),
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.b.get(self.at..end).ok_or(DecodeError::Truncated)?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.u16()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?).map_err(|_| DecodeError::NotUtf8)
    }
    fn left(&self) -> usize {
        self.b.len() - self.at
    }
}

/// The tag of a frame (`size type tag ...`), if it has one: what an
/// Rerror to a message that does not decode must carry.
pub fn tag_of(frame: &[u8]) -> Option<u16> {
    frame.get(5..7).map(|t| u16::from_le_bytes([t[0], t[1]]))
}

/// Decodes one whole frame, size field included. With `dotu`, Tauth and
/// Tattach may end with 9P2000.u's numeric user id (which is skipped).
pub fn decode_request(frame: &[u8], dotu: bool) -> Result<Request, DecodeError> {
    let mut r = Reader { b: frame, at: 0 };
    let size = r.u32()?;
    if size as usize != frame.len() {
        return Err(DecodeError::Size(size));
    }
    let kind = r.u8()?;
    let tag = r.u16()?;
    let msg = match kind {
        100 => Tmsg::Version {
            msize: r.u32()?,
            version: r.string()?,
        },
        102 => {
            let msg = Tmsg::Auth {
                afid: r.u32()?,
                uname: r.string()?,
                aname: r.string()?,
            };
            if dotu && r.left() == 4 {
                r.u32()?;
            }
            msg
        }
        104 => {
            let msg = Tmsg::Attach {
                fid: r.u32()?,
                afid: r.u32()?,
                uname: r.string()?,
                aname: r.string()?,
            };
            if dotu && r.left() == 4 {
                r.u32()?;
            }
            msg
        }
        108 => Tmsg::Flush { oldtag: r.u16()? },
        110 => {
            let fid = r.u32()?;
            let newfid = r.u32()?;
            let n = r.u16()?;
            if n as usize > MAXWELEM {
                return Err(DecodeError::TooManyNames(n));
            }
            let mut names = Vec::with_capacity(n as usize);
            for _ in 0..n {
                names.push(r.bytes()?);
            }
            Tmsg::Walk { fid, newfid, names }
        }
        112 => Tmsg::Open {
            fid: r.u32()?,
            mode: r.u8()?,
        },
        114 => {
            let msg = Tmsg::Create {
                fid: r.u32()?,
                name: r.bytes()?,
                perm: r.u32()?,
                mode: r.u8()?,
            };
            if dotu {
                // The extension string; nothing here creates anything.
                let _ = r.bytes();
            }
            msg
        }
        116 => Tmsg::Read {
            fid: r.u32()?,
            offset: r.u64()?,
            count: r.u32()?,
        },
        118 => {
            let fid = r.u32()?;
            let offset = r.u64()?;
            let n = r.u32()? as usize;
            Tmsg::Write {
                fid,
                offset,
                data: r.take(n)?.to_vec(),
            }
        }
        120 => Tmsg::Clunk { fid: r.u32()? },
        122 => Tmsg::Remove { fid: r.u32()? },
        124 => Tmsg::Stat { fid: r.u32()? },
        126 => {
            let fid = r.u32()?;
            let n = r.u16()? as usize;
            Tmsg::Wstat {
                fid,
                stat: r.take(n)?.to_vec(),
            }
        }
        other => return Err(DecodeError::UnknownType(other)),
    };
    if r.left() != 0 {
        return Err(DecodeError::Trailing(r.left()));
    }
    Ok(Request { tag, msg })
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let n = b.len().min(u16::MAX as usize);
    put_u16(out, n as u16);
    out.extend_from_slice(&b[..n]);
}
fn put_qid(out: &mut Vec<u8>, q: &Qid) {
    out.push(q.kind);
    put_u32(out, q.version);
    put_u64(out, q.path);
}

/// Appends `s` as a stat (`size[2]` first), with 9P2000.u's fields when
/// `dotu`: what Rstat carries and a directory read returns, one after
/// another.
pub fn encode_stat(s: &Stat, dotu: bool, out: &mut Vec<u8>) {
    let start = out.len();
    put_u16(out, 0);
    put_u16(out, s.kind);
    put_u32(out, s.dev);
    put_qid(out, &s.qid);
    put_u32(out, s.mode);
    put_u32(out, s.atime);
    put_u32(out, s.mtime);
    put_u64(out, s.length);
    put_bytes(out, &s.name);
    put_bytes(out, s.uid.as_bytes());
    put_bytes(out, s.gid.as_bytes());
    put_bytes(out, s.muid.as_bytes());
    if dotu {
        put_bytes(out, &s.extension);
        put_u32(out, s.n_uid);
        put_u32(out, s.n_gid);
        put_u32(out, s.n_muid);
    }
    let n = (out.len() - start - 2) as u16;
    out[start..start + 2].copy_from_slice(&n.to_le_bytes());
}

/// Frames a reply.
pub fn encode_response(tag: u16, msg: &Rmsg, dotu: bool) -> Vec<u8> {
    let mut out = vec![0; 4];
    let kind = match msg {
        Rmsg::Version { .. } => 101,
        Rmsg::Attach { .. } => 105,
        Rmsg::Error { .. } => 107,
        Rmsg::Flush => 109,
        Rmsg::Walk { .. } => 111,
        Rmsg::Open { .. } => 113,
        Rmsg::Read { .. } => 117,
        Rmsg::Clunk => 121,
        Rmsg::Stat { .. } => 125,
    };
    out.push(kind);
    put_u16(&mut out, tag);
    match msg {
        Rmsg::Version { msize, version } => {
            put_u32(&mut out, *msize);
            put_bytes(&mut out, version.as_bytes());
        }
        Rmsg::Attach { qid } => put_qid(&mut out, qid),
        Rmsg::Error { ename, errno } => {
            put_bytes(&mut out, ename.as_bytes());
            if dotu {
                put_u32(&mut out, *errno);
            }
        }
        Rmsg::Flush | Rmsg::Clunk => {}
        Rmsg::Walk { qids } => {
            put_u16(&mut out, qids.len() as u16);
            for q in qids {
                put_qid(&mut out, q);
            }
        }
        Rmsg::Open { qid, iounit } => {
            put_qid(&mut out, qid);
            put_u32(&mut out, *iounit);
        }
        Rmsg::Read { data } => {
            put_u32(&mut out, data.len() as u32);
            out.extend_from_slice(data);
        }
        Rmsg::Stat { stat } => {
            // Rstat's stat[n]: a count, then the stat with its own size.
            let mut s = Vec::new();
            encode_stat(stat, dotu, &mut s);
            put_u16(&mut out, s.len() as u16);
            out.extend_from_slice(&s);
        }
    }
    let size = out.len() as u32;
    out[..4].copy_from_slice(&size.to_le_bytes());
    out
}

/// Frames a request (for clients and tests: the inverse of
/// [`decode_request`]).
pub fn encode_request(req: &Request) -> Vec<u8> {
    let mut out = vec![0; 4];
    let kind = match &req.msg {
        Tmsg::Version { .. } => 100,
        Tmsg::Auth { .. } => 102,
        Tmsg::Attach { .. } => 104,
        Tmsg::Flush { .. } => 108,
        Tmsg::Walk { .. } => 110,
        Tmsg::Open { .. } => 112,
        Tmsg::Create { .. } => 114,
        Tmsg::Read { .. } => 116,
        Tmsg::Write { .. } => 118,
        Tmsg::Clunk { .. } => 120,
        Tmsg::Remove { .. } => 122,
        Tmsg::Stat { .. } => 124,
        Tmsg::Wstat { .. } => 126,
    };
    out.push(kind);
    put_u16(&mut out, req.tag);
    match &req.msg {
        Tmsg::Version { msize, version } => {
            put_u32(&mut out, *msize);
            put_bytes(&mut out, version.as_bytes());
        }
        Tmsg::Auth { afid, uname, aname } => {
            put_u32(&mut out, *afid);
            put_bytes(&mut out, uname.as_bytes());
            put_bytes(&mut out, aname.as_bytes());
        }
        Tmsg::Attach {
            fid,
            afid,
            uname,
            aname,
        } => {
            put_u32(&mut out, *fid);
            put_u32(&mut out, *afid);
            put_bytes(&mut out, uname.as_bytes());
            put_bytes(&mut out, aname.as_bytes());
        }
        Tmsg::Flush { oldtag } => put_u16(&mut out, *oldtag),
        Tmsg::Walk { fid, newfid, names } => {
            put_u32(&mut out, *fid);
            put_u32(&mut out, *newfid);
            put_u16(&mut out, names.len() as u16);
            for n in names {
                put_bytes(&mut out, n);
            }
        }
        Tmsg::Open { fid, mode } => {
            put_u32(&mut out, *fid);
            out.push(*mode);
        }
        Tmsg::Create {
            fid,
            name,
            perm,
            mode,
        } => {
            put_u32(&mut out, *fid);
            put_bytes(&mut out, name);
            put_u32(&mut out, *perm);
            out.push(*mode);
        }
        Tmsg::Read { fid, offset, count } => {
            put_u32(&mut out, *fid);
            put_u64(&mut out, *offset);
            put_u32(&mut out, *count);
        }
        Tmsg::Write { fid, offset, data } => {
            put_u32(&mut out, *fid);
            put_u64(&mut out, *offset);
            put_u32(&mut out, data.len() as u32);
            out.extend_from_slice(data);
        }
        Tmsg::Clunk { fid } | Tmsg::Remove { fid } | Tmsg::Stat { fid } => put_u32(&mut out, *fid),
        Tmsg::Wstat { fid, stat } => {
            put_u32(&mut out, *fid);
            put_u16(&mut out, stat.len() as u16);
            out.extend_from_slice(stat);
        }
    }
    let size = out.len() as u32;
    out[..4].copy_from_slice(&size.to_le_bytes());
    out
}
