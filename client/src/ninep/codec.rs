//! The 9P2000 messages a read-only file server needs, and 9P2000.u's
//! additions (numeric ids, symbolic links, errno in Rerror), as bytes:
//! a pure codec, no I/O. Every message is `size[4] type[1] tag[2]` and
//! its fields, little-endian; strings are `len[2]` + UTF-8 (names are
//! taken as bytes). See `docs/PROTOCOL.md` ("9P").

/// Tversion's tag.
pub const NOTAG: u16 = 0xffff;
/// "No fid" in Tattach's afid.
pub const NOFID: u32 = 0xffff_ffff;
/// A qid's type bit for directories.
pub const QTDIR: u8 = 0x80;
/// A qid's type bit for symbolic links (9P2000.u).
pub const QTSYMLINK: u8 = 0x02;
/// Stat mode bit: a directory.
pub const DMDIR: u32 = 0x8000_0000;
/// Stat mode bit: a symbolic link (9P2000.u).
pub const DMSYMLINK: u32 = 0x0200_0000;
/// Stat mode bit: a device (9P2000.u).
pub const DMDEVICE: u32 = 0x0080_0000;
/// Stat mode bit: a named pipe (9P2000.u).
pub const DMNAMEDPIPE: u32 = 0x0020_0000;
/// Stat mode bit: set-user-id (9P2000.u).
pub const DMSETUID: u32 = 0x0008_0000;
/// Stat mode bit: set-group-id (9P2000.u).
pub const DMSETGID: u32 = 0x0004_0000;
/// The most names one Twalk may carry.
pub const MAXWELEM: usize = 16;
/// Bytes of a message before its fields: size, type, tag.
pub const HEADER: usize = 7;
/// Bytes of Rread before its data (`size type tag count`): what a read
/// may return is msize minus this.
pub const READ_OVERHEAD: usize = HEADER + 4;

/// A file's identity on the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Qid {
    /// QTDIR, QTSYMLINK, or 0 for a file.
    pub kind: u8,
    /// Version (0: nothing here ever changes).
    pub version: u32,
    /// Unique per file: the inode number.
    pub path: u64,
}

/// A directory entry as 9P describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// Server type (unused: 0).
    pub kind: u16,
    /// Server device (unused: 0).
    pub dev: u32,
    /// The file's qid.
    pub qid: Qid,
    /// Permission bits and DM* bits.
    pub mode: u32,
    /// Last access, seconds.
    pub atime: u32,
    /// Last modification, seconds.
    pub mtime: u32,
    /// Length in bytes (0 for directories).
    pub length: u64,
    /// The file's name (`/` for the root).
    pub name: Vec<u8>,
    /// Owner.
    pub uid: String,
    /// Group.
    pub gid: String,
    /// Last modifier.
    pub muid: String,
    /// 9P2000.u: a symbolic link's target, a device's `c M m`.
    pub extension: Vec<u8>,
    /// 9P2000.u: numeric owner.
    pub n_uid: u32,
    /// 9P2000.u: numeric group.
    pub n_gid: u32,
    /// 9P2000.u: numeric last modifier.
    pub n_muid: u32,
}

/// A request from a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tmsg {
    /// Type 100: negotiate the message size and the dialect.
    Version {
        /// Largest message the client takes.
        msize: u32,
        /// "9P2000" or "9P2000.u" (or something this server refuses).
        version: String,
    },
    /// Type 102: set up authentication (this server needs none).
    Auth {
        /// The fid for the authentication file.
        afid: u32,
        /// User name.
        uname: String,
        /// Tree name.
        aname: String,
    },
    /// Type 104: the root of the tree, as `fid`.
    Attach {
        /// The new fid.
        fid: u32,
        /// Authentication fid (NOFID).
        afid: u32,
        /// User name.
        uname: String,
        /// Tree name.
        aname: String,
    },
    /// Type 108: abandon request `oldtag`.
    Flush {
        /// Its tag.
        oldtag: u16,
    },
    /// Type 110: walk `names` from `fid`, as `newfid`.
    Walk {
        /// From.
        fid: u32,
        /// The result's fid (may be `fid`).
        newfid: u32,
        /// Path elements, at most [`MAXWELEM`].
        names: Vec<Vec<u8>>,
    },
    /// Type 112: open for I/O.
    Open {
        /// The file.
        fid: u32,
        /// OREAD 0, OWRITE 1, ORDWR 2, OEXEC 3, | OTRUNC 0x10 ...
        mode: u8,
    },
    /// Type 114: create a file (refused: read-only).
    Create {
        /// The directory.
        fid: u32,
        /// The name.
        name: Vec<u8>,
        /// Permissions.
        perm: u32,
        /// Open mode.
        mode: u8,
    },
    /// Type 116: read `count` bytes at `offset`.
    Read {
        /// The file.
        fid: u32,
        /// Where.
        offset: u64,
        /// How much.
        count: u32,
    },
    /// Type 118: write (refused: read-only).
    Write {
        /// The file.
        fid: u32,
        /// Where.
        offset: u64,
        /// What.
        data: Vec<u8>,
    },
    /// Type 120: forget a fid.
    Clunk {
        /// The fid.
        fid: u32,
    },
    /// Type 122: remove (refused: read-only).
    Remove {
        /// The fid.
        fid: u32,
    },
    /// Type 124: describe a file.
    Stat {
        /// The fid.
        fid: u32,
    },
    /// Type 126: change a file's description (refused: read-only).
    Wstat {
        /// The fid.
        fid: u32,
        /// The stat bytes as sent.
        stat: Vec<u8>,
    },
}

/// A reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rmsg {
    /// Type 101.
    Version {
        /// The size both will use.
        msize: u32,
        /// The dialect, or "unknown".
        version: String,
    },
    /// Type 107: the request failed.
    Error {
        /// Why, for people.
        ename: String,
        /// 9P2000.u: the errno.
        errno: u32,
    },
    /// Type 109.
    Flush,
    /// Type 105.
    Attach {
        /// The root's qid.
        qid: Qid,
    },
    /// Type 111: a qid per element walked.
    Walk {
        /// The qids.
        qids: Vec<Qid>,
    },
    /// Type 113.
    Open {
        /// The file's qid.
        qid: Qid,
        /// Most bytes a read returns at once (0: msize - 24).
        iounit: u32,
    },
    /// Type 117.
    Read {
        /// The bytes.
        data: Vec<u8>,
    },
    /// Type 121.
    Clunk,
    /// Type 125.
    Stat {
        /// The description.
        stat: Stat,
    },
}

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

/// A request's tag and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The tag the reply must carry.
    pub tag: u16,
    /// The body.
    pub msg: Tmsg,
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden_bytes() {
        // Tversion 8192 "9P2000", tag NOTAG: as plan9port's 9p sends it.
        let t = Request {
            tag: NOTAG,
            msg: Tmsg::Version {
                msize: 8192,
                version: "9P2000".into(),
            },
        };
        let bytes = encode_request(&t);
        assert_eq!(
            hex::encode(&bytes),
            "1300000064ffff002000000600395032303030"
        );
        assert_eq!(decode_request(&bytes, false).unwrap(), t);
        // Rwalk of one directory qid (path 2), tag 1.
        let r = Rmsg::Walk {
            qids: vec![Qid {
                kind: QTDIR,
                version: 0,
                path: 2,
            }],
        };
        assert_eq!(
            hex::encode(encode_response(1, &r, false)),
            "160000006f0100010080000000000200000000000000"
        );
        // Rerror "no", tag 7: 9P2000, then 9P2000.u with errno 2.
        let e = Rmsg::Error {
            ename: "no".into(),
            errno: 2,
        };
        assert_eq!(
            hex::encode(encode_response(7, &e, false)),
            "0b0000006b070002006e6f"
        );
        assert_eq!(
            hex::encode(encode_response(7, &e, true)),
            "0f0000006b070002006e6f02000000"
        );
    }

    #[test]
    fn a_stat_counts_its_own_size() {
        let s = Stat {
            qid: Qid {
                kind: 0,
                version: 0,
                path: 9,
            },
            mode: 0o644,
            length: 5,
            name: b"a".to_vec(),
            uid: "u".into(),
            gid: "g".into(),
            ..Stat::default()
        };
        let mut out = Vec::new();
        encode_stat(&s, false, &mut out);
        // 2+4+13+4+4+4+8 fixed, then four strings: 2+1, 2+1, 2+1, 2+0.
        assert_eq!(out.len(), 2 + 39 + 3 + 3 + 3 + 2);
        assert_eq!(u16::from_le_bytes([out[0], out[1]]) as usize, out.len() - 2);
        let mut u = Vec::new();
        encode_stat(&s, true, &mut u);
        assert_eq!(u.len(), out.len() + 2 + 12);
    }

    #[test]
    fn refuses_bad_frames() {
        assert_eq!(decode_request(&[1, 2], false), Err(DecodeError::Truncated));
        // Size field 9, frame of 7 bytes.
        assert_eq!(
            decode_request(&[9, 0, 0, 0, 120, 0, 0], false),
            Err(DecodeError::Size(9))
        );
        assert_eq!(
            decode_request(&[7, 0, 0, 0, 200, 1, 0], false),
            Err(DecodeError::UnknownType(200))
        );
        // A reply's type is not a request.
        assert_eq!(
            decode_request(&[7, 0, 0, 0, 101, 1, 0], false),
            Err(DecodeError::UnknownType(101))
        );
        // Tclunk with a byte too many.
        assert_eq!(
            decode_request(&[12, 0, 0, 0, 120, 1, 0, 5, 0, 0, 0, 9], false),
            Err(DecodeError::Trailing(1))
        );
        let walk = Request {
            tag: 1,
            msg: Tmsg::Walk {
                fid: 0,
                newfid: 1,
                names: vec![b"a".to_vec(); 17],
            },
        };
        assert_eq!(
            decode_request(&encode_request(&walk), false),
            Err(DecodeError::TooManyNames(17))
        );
        assert_eq!(tag_of(&[7, 0, 0, 0, 200, 0x34, 0x12]), Some(0x1234));
        assert_eq!(tag_of(&[7, 0, 0]), None);
    }

    fn any_request() -> impl Strategy<Value = Request> {
        let name = prop::collection::vec(any::<u8>(), 0..20);
        let text = "[a-z0-9.]{0,12}";
        let msg = prop_oneof![
            (any::<u32>(), text).prop_map(|(msize, version)| Tmsg::Version { msize, version }),
            (any::<u32>(), text, text).prop_map(|(afid, uname, aname)| Tmsg::Auth {
                afid,
                uname,
                aname
            }),
            (any::<u32>(), any::<u32>(), text, text).prop_map(|(fid, afid, uname, aname)| {
                Tmsg::Attach {
                    fid,
                    afid,
                    uname,
                    aname,
                }
            }),
            any::<u16>().prop_map(|oldtag| Tmsg::Flush { oldtag }),
            (
                any::<u32>(),
                any::<u32>(),
                prop::collection::vec(name.clone(), 0..=MAXWELEM)
            )
                .prop_map(|(fid, newfid, names)| Tmsg::Walk { fid, newfid, names }),
            (any::<u32>(), any::<u8>()).prop_map(|(fid, mode)| Tmsg::Open { fid, mode }),
            (any::<u32>(), any::<u64>(), any::<u32>())
                .prop_map(|(fid, offset, count)| Tmsg::Read { fid, offset, count }),
            (any::<u32>(), any::<u64>(), name.clone())
                .prop_map(|(fid, offset, data)| Tmsg::Write { fid, offset, data }),
            any::<u32>().prop_map(|fid| Tmsg::Clunk { fid }),
            any::<u32>().prop_map(|fid| Tmsg::Stat { fid }),
            (any::<u32>(), name).prop_map(|(fid, stat)| Tmsg::Wstat { fid, stat }),
        ];
        (any::<u16>(), msg).prop_map(|(tag, msg)| Request { tag, msg })
    }

    proptest! {
        #[test]
        fn requests_round_trip(req in any_request()) {
            prop_assert_eq!(decode_request(&encode_request(&req), false).unwrap(), req);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), dotu: bool) {
            let _ = decode_request(&bytes, dotu);
            // With a size field that matches, every path past it is tried.
            let mut framed = bytes.clone();
            if framed.len() >= 4 {
                let n = framed.len() as u32;
                framed[..4].copy_from_slice(&n.to_le_bytes());
                let _ = decode_request(&framed, dotu);
            }
        }
    }
}
