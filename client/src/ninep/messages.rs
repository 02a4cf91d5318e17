//! The 9P2000 messages a read-only file server needs, and 9P2000.u's
//! additions (numeric ids, symbolic links, errno in Rerror), as types;
//! `codec` turns them into bytes and back. See `docs/PROTOCOL.md` ("9P").

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

/// A request's tag and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The tag the reply must carry.
    pub tag: u16,
    /// The body.
    pub msg: Tmsg,
}
