//! Directory entries: what a directory's content stream holds.
//!
//! A directory is stored like a file (`tree.rs`), its content being
//! `version[1] = 1` followed by entries sorted by name bytes, no name
//! twice. An entry is `length[4]` then its fields (big-endian; `s16`/`s32`
//! are a 2- or 4-byte length then bytes):
//!
//! ```text
//! kind[1] name[s16] mode[4] uid[4] gid[4] user[s16] group[s16]
//! mtime_ns[8] size[8] rdev[8] target[s32] has_content[1] content[84]?
//! xattr_count[2] { name[s16] value[s32] }* nlink[4]?
//! ```
//!
//! Readers skip bytes after the last field they know, so later versions
//! can append fields. `nlink` is such a field: the source's link count,
//! written only when it is above 1 (directories, hard-linked files); an
//! entry without it (all entries of older snapshots) reads as 0, not
//! known. Names are raw bytes: non-UTF-8 names survive.

use crate::format::block::Ref;

/// The version byte at the start of a directory stream.
pub const DIR_VERSION: u8 = 1;

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file; `content` is its data tree.
    File = 1,
    /// A directory; `content` is its entry stream's tree.
    Dir = 2,
    /// A symbolic link; `target` is the link text.
    Symlink = 3,
    /// Another name for a file stored earlier in the snapshot; `target`
    /// is that file's path from the snapshot root.
    Hardlink = 4,
    /// A named pipe.
    Fifo = 5,
    /// A character device (`rdev`).
    CharDevice = 6,
    /// A block device (`rdev`).
    BlockDevice = 7,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::File,
            2 => Kind::Dir,
            3 => Kind::Symlink,
            4 => Kind::Hardlink,
            5 => Kind::Fifo,
            6 => Kind::CharDevice,
            7 => Kind::BlockDevice,
            _ => return None,
        })
    }
}

/// One name in a directory and everything restore needs to recreate it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// What it is.
    pub kind: Kind,
    /// Its name (raw bytes, no '/').
    pub name: Vec<u8>,
    /// Permission bits and file type bits as `st_mode`.
    pub mode: u32,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Owner name, if known (restore prefers it to the id).
    pub user: String,
    /// Group name, if known.
    pub group: String,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Size in bytes (files).
    pub size: u64,
    /// Device number (devices).
    pub rdev: u64,
    /// Symlink text, or a hard link's first path.
    pub target: Vec<u8>,
    /// The data (files) or entry stream (directories).
    pub content: Option<Ref>,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The source's link count (`st_nlink`) when it was above 1; 0 when
    /// not recorded (it was 1, or the snapshot predates the field).
    pub nlink: u32,
}

impl Entry {
    /// A directory that is only a name (mode 0755, no owner, no time),
    /// with `content` as its entries: the snapshot's root, and the
    /// directories above a backed-up path.
    pub fn bare_dir(name: Vec<u8>, content: Ref) -> Entry {
        Entry {
            kind: Kind::Dir,
            name,
            mode: 0o040755,
            uid: 0,
            gid: 0,
            user: String::new(),
            group: String::new(),
            mtime_ns: 0,
            size: 0,
            rdev: 0,
            target: Vec::new(),
            content: Some(content),
            xattrs: Vec::new(),
            nlink: 0,
        }
    }
}

/// Why a directory stream did not decode. `at` is a byte offset.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DirError {
    /// An unknown version byte.
    #[error("directory stream version {0} is not supported by this eventi")]
    Version(u8),
    /// The stream ends inside an entry.
    #[error("directory stream truncated at byte {at}")]
    Truncated {
        /// Offset.
        at: usize,
    },
    /// A field is invalid.
    #[error("bad directory entry at byte {at}: {why}")]
    Bad {
        /// Offset.
        at: usize,
        /// What.
        why: &'static str,
    },
}

fn put_s16(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(&b[..b.len().min(u16::MAX as usize)]);
}

fn put_s32(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// Appends one entry to a directory stream being built.
pub fn encode_entry(e: &Entry, out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(64 + e.name.len() + e.target.len());
    body.push(e.kind as u8);
    put_s16(&mut body, &e.name);
    for v in [e.mode, e.uid, e.gid] {
        body.extend_from_slice(&v.to_be_bytes());
    }
    put_s16(&mut body, e.user.as_bytes());
    put_s16(&mut body, e.group.as_bytes());
    body.extend_from_slice(&e.mtime_ns.to_be_bytes());
    body.extend_from_slice(&e.size.to_be_bytes());
    body.extend_from_slice(&e.rdev.to_be_bytes());
    put_s32(&mut body, &e.target);
    match &e.content {
        Some(r) => {
            body.push(1);
            body.extend_from_slice(&r.to_bytes());
        }
        None => body.push(0),
    }
    body.extend_from_slice(&(e.xattrs.len() as u16).to_be_bytes());
    for (k, v) in &e.xattrs {
        put_s16(&mut body, k);
        put_s32(&mut body, v);
    }
    if e.nlink > 1 {
        body.extend_from_slice(&e.nlink.to_be_bytes());
    }
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
}

/// A whole directory stream; sorts the entries by name.
pub fn encode(entries: &mut [Entry]) -> Vec<u8> {
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = vec![DIR_VERSION];
    for e in entries.iter() {
        encode_entry(e, &mut out);
    }
    out
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
    base: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DirError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(DirError::Truncated {
                at: self.base + self.at,
            })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DirError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DirError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, DirError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, DirError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn s16(&mut self) -> Result<Vec<u8>, DirError> {
        let n = self.u16()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn s32(&mut self) -> Result<Vec<u8>, DirError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
}

fn decode_body(b: &[u8], base: usize) -> Result<Entry, DirError> {
    let mut c = Cursor { b, at: 0, base };
    let bad = |why| DirError::Bad { at: base, why };
    let kind = Kind::from_byte(c.u8()?).ok_or(bad("unknown kind"))?;
    let name = c.s16()?;
    if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
        return Err(bad("bad name"));
    }
    let (mode, uid, gid) = (c.u32()?, c.u32()?, c.u32()?);
    let user = String::from_utf8(c.s16()?).map_err(|_| bad("user name not UTF-8"))?;
    let group = String::from_utf8(c.s16()?).map_err(|_| bad("group name not UTF-8"))?;
    let mtime_ns = c.u64()? as i64;
    let size = c.u64()?;
    let rdev = c.u64()?;
    let target = c.s32()?;
    let content = match c.u8()? {
        0 => None,
        1 => Some(Ref::from_bytes(c.take(Ref::LEN)?).ok_or(bad("bad reference"))?),
        _ => return Err(bad("bad content flag")),
    };
    let n = c.u16()?;
    let mut xattrs = Vec::with_capacity(n as usize);
    for _ in 0..n {
        xattrs.push((c.s16()?, c.s32()?));
    }
    let nlink = if c.at + 4 <= b.len() { c.u32()? } else { 0 };
    // Anything after the known fields belongs to a later version: skipped.
    Ok(Entry {
        kind,
        name,
        mode,
        uid,
        gid,
        user,
        group,
        mtime_ns,
        size,
        rdev,
        target,
        content,
        xattrs,
        nlink,
    })
}

/// Decodes a whole directory stream, checking the order of names.
pub fn decode(stream: &[u8]) -> Result<Vec<Entry>, DirError> {
    match stream.first() {
        Some(&DIR_VERSION) => {}
        Some(&v) => return Err(DirError::Version(v)),
        None => return Err(DirError::Truncated { at: 0 }),
    }
    let mut c = Cursor {
        b: stream,
        at: 1,
        base: 0,
    };
    let mut out: Vec<Entry> = Vec::new();
    while c.at < stream.len() {
        let start = c.at;
        let len = c.u32()? as usize;
        let body = c.take(len)?;
        let e = decode_body(body, start + 4)?;
        if let Some(prev) = out.last() {
            if prev.name >= e.name {
                return Err(DirError::Bad {
                    at: start,
                    why: "names out of order or repeated",
                });
            }
        }
        out.push(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(name: &[u8]) -> Entry {
        Entry {
            kind: Kind::File,
            name: name.to_vec(),
            mode: 0o100644,
            uid: 1000,
            gid: 1000,
            user: "u".into(),
            group: "g".into(),
            mtime_ns: 1_700_000_000_123_456_789,
            size: 5,
            rdev: 0,
            target: vec![],
            content: None,
            xattrs: vec![],
            nlink: 0,
        }
    }

    #[test]
    fn golden_bytes_of_one_entry() {
        let mut out = vec![DIR_VERSION];
        encode_entry(&entry(b"a"), &mut out);
        let want = concat!(
            "01",       // version
            "00000035", // entry length 53
            "01",
            "0001",
            "61", // file, name "a"
            "000081a4",
            "000003e8",
            "000003e8", // mode, uid, gid
            "0001",
            "75",
            "0001",
            "67",               // "u", "g"
            "17979cfe3d85cd15", // mtime ns
            "0000000000000005",
            "0000000000000000", // size, rdev
            "00000000",
            "00",
            "0000" // no target, content, xattrs
        );
        assert_eq!(hex::encode(&out), want);
        // A hard-linked file (3 names) carries its link count at the end.
        let mut linked = entry(b"a");
        linked.nlink = 3;
        let mut out = vec![DIR_VERSION];
        encode_entry(&linked, &mut out);
        let want = want.replace("00000035", "00000039") + "00000003";
        assert_eq!(hex::encode(&out), want);
        assert_eq!(decode(&out).unwrap(), vec![linked]);
    }

    #[test]
    fn refuses_disorder_duplicates_bad_names_and_truncation() {
        let mut s = vec![DIR_VERSION];
        encode_entry(&entry(b"b"), &mut s);
        encode_entry(&entry(b"a"), &mut s);
        assert!(matches!(decode(&s), Err(DirError::Bad { .. })));
        let mut s = vec![DIR_VERSION];
        encode_entry(&entry(b"a/b"), &mut s);
        assert!(matches!(decode(&s), Err(DirError::Bad { .. })));
        let mut s = vec![DIR_VERSION];
        encode_entry(&entry(b"a"), &mut s);
        assert!(matches!(
            decode(&s[..s.len() - 1]),
            Err(DirError::Truncated { .. })
        ));
        assert_eq!(decode(&[9]), Err(DirError::Version(9)));
    }

    #[test]
    fn later_fields_are_skipped() {
        let mut s = vec![DIR_VERSION];
        encode_entry(&entry(b"a"), &mut s);
        // Pretend a later version appended a link count of 2 and then 3
        // bytes of its own to the entry.
        let len = u32::from_be_bytes(s[1..5].try_into().unwrap()) + 7;
        s[1..5].copy_from_slice(&len.to_be_bytes());
        s.extend_from_slice(&[0, 0, 0, 2, 7, 7, 7]);
        let mut want = entry(b"a");
        want.nlink = 2;
        assert_eq!(decode(&s).unwrap(), vec![want]);
    }

    fn any_entry() -> impl Strategy<Value = Entry> {
        (
            prop::collection::vec(any::<u8>().prop_filter("no slash", |b| *b != b'/'), 1..40),
            1u8..=7,
            any::<(u32, u32, u32, i64, u64, u64)>(),
            prop::collection::vec(any::<u8>(), 0..100),
            proptest::option::of(any::<[u8; 20]>()),
            prop::collection::vec(
                (
                    prop::collection::vec(any::<u8>(), 1..20),
                    prop::collection::vec(any::<u8>(), 0..50),
                ),
                0..3,
            ),
            // 1 is written as absent, which reads as 0.
            any::<u32>().prop_map(|n| if n == 1 { 0 } else { n }),
        )
            .prop_filter("not . or ..", |(n, ..)| n != b"." && n != b"..")
            .prop_map(
                |(
                    name,
                    k,
                    (mode, uid, gid, mtime_ns, size, rdev),
                    target,
                    content,
                    xattrs,
                    nlink,
                )| {
                    Entry {
                        kind: Kind::from_byte(k).unwrap(),
                        name,
                        mode,
                        uid,
                        gid,
                        user: "user".into(),
                        group: "grüppe".into(),
                        mtime_ns,
                        size,
                        rdev,
                        target,
                        content: content.map(|s| Ref {
                            score: eventi_shared::Score(s),
                            key: [1; 32],
                            check: [2; 32],
                        }),
                        xattrs,
                        nlink,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn directories_round_trip(mut entries in prop::collection::vec(any_entry(), 0..20)) {
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            entries.dedup_by(|a, b| a.name == b.name);
            let stream = encode(&mut entries.clone());
            prop_assert_eq!(decode(&stream).unwrap(), entries);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }
    }
}
