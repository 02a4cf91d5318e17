//! A read-only 9P2000 (and 9P2000.u) file server over a [`Browser`]: one
//! thread per connection, requests answered in order. A message that
//! does not decode gets Rerror (with its tag) and the connection goes
//! on; a frame whose size is out of bounds, or a connection that ends
//! inside a frame, is closed.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use crate::browse::blocks::Sequence;
use crate::browse::{Attr, BrowseError, Browser, Ino, Listed, ROOT};
use crate::format::dirent::Kind;
use crate::ninep::codec;
use crate::ninep::messages::{self as m, Qid, Request, Rmsg, Stat, Tmsg};

/// The largest message this server takes or sends.
pub const MAX_MSIZE: u32 = 1 << 20;
/// The smallest msize a client may ask for (a stat must fit).
const MIN_MSIZE: u32 = 256;
/// Connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 64;

/// Serves `browser` on `listener` until the process ends.
pub fn serve(listener: TcpListener, browser: Arc<Browser>) -> std::io::Result<()> {
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                eprintln!("eventi: 9P: accepting a connection: {e}");
                continue;
            }
        };
        while open.load(SeqCst) >= MAX_CONNECTIONS {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        open.fetch_add(1, SeqCst);
        let browser = Arc::clone(&browser);
        let open = Arc::clone(&open);
        std::thread::spawn(move || {
            let peer = stream
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            if let Err(e) = Connection::new(browser).run(stream) {
                eprintln!("eventi: 9P: {peer}: {e}");
            }
            open.fetch_sub(1, SeqCst);
        });
    }
    Ok(())
}

/// What a fid stands for.
struct Fid {
    ino: Ino,
    open: Option<Opened>,
}

enum Opened {
    File(Sequence),
    /// A directory being read: its listing, how far (entries and
    /// bytes) the reads have gone.
    Dir {
        listing: Vec<Listed>,
        next: usize,
        offset: u64,
    },
}

/// One client's session.
struct Connection {
    browser: Arc<Browser>,
    msize: u32,
    dotu: bool,
    fids: HashMap<u32, Fid>,
}

/// A failed request: Rerror's text and errno.
struct Failure(String, u32);

impl From<BrowseError> for Failure {
    fn from(e: BrowseError) -> Failure {
        let errno = match &e {
            BrowseError::NotFound => libc::ENOENT,
            BrowseError::NotDir => libc::ENOTDIR,
            BrowseError::NotFile => libc::EISDIR,
            BrowseError::NotLink => libc::EINVAL,
            BrowseError::Failed { .. } => libc::EIO,
        };
        Failure(e.to_string(), errno as u32)
    }
}

fn fail(text: &str, errno: i32) -> Failure {
    Failure(text.to_string(), errno as u32)
}

fn qid_of(a: &Attr) -> Qid {
    let kind = match a.kind {
        Kind::Dir => m::QTDIR,
        Kind::Symlink => m::QTSYMLINK,
        _ => 0,
    };
    Qid {
        kind,
        version: 0,
        path: a.ino,
    }
}

impl Connection {
    fn new(browser: Arc<Browser>) -> Connection {
        Connection {
            browser,
            msize: MAX_MSIZE,
            dotu: false,
            fids: HashMap::new(),
        }
    }

    fn run(mut self, mut stream: TcpStream) -> std::io::Result<()> {
        stream.set_nodelay(true)?;
        loop {
            let mut size = [0u8; 4];
            match stream.read_exact(&mut size) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
            let n = u32::from_le_bytes(size);
            if (n as usize) < m::HEADER || n > self.msize {
                return Err(std::io::Error::other(format!(
                    "a message of {n} bytes (the limit is {}): closing",
                    self.msize
                )));
            }
            let mut frame = vec![0u8; n as usize];
            frame[..4].copy_from_slice(&size);
            stream.read_exact(&mut frame[4..])?;
            let reply = self.answer(&frame);
            stream.write_all(&reply)?;
        }
    }

    /// The reply to one frame.
    fn answer(&mut self, frame: &[u8]) -> Vec<u8> {
        let tag = codec::tag_of(frame).unwrap_or(m::NOTAG);
        let reply = match codec::decode_request(frame, self.dotu) {
            Ok(Request { tag, msg }) => (tag, self.handle(msg)),
            Err(e) => (tag, Err(fail(&e.to_string(), libc::EINVAL))),
        };
        let msg = match reply.1 {
            Ok(m) => m,
            Err(Failure(ename, errno)) => Rmsg::Error { ename, errno },
        };
        codec::encode_response(reply.0, &msg, self.dotu)
    }

    fn fid(&mut self, fid: u32) -> Result<&mut Fid, Failure> {
        self.fids
            .get_mut(&fid)
            .ok_or_else(|| fail("unknown fid", libc::EBADF))
    }

    fn handle(&mut self, msg: Tmsg) -> Result<Rmsg, Failure> {
        let read_only = || fail("read-only file system", libc::EROFS);
        match msg {
            Tmsg::Version { msize, version } => {
                // The answer may not exceed what the client takes.
                if msize < MIN_MSIZE {
                    return Err(fail(
                        &format!("msize {msize} is too small (at least {MIN_MSIZE})"),
                        libc::EINVAL,
                    ));
                }
                self.fids.clear();
                self.msize = msize.min(MAX_MSIZE);
                let version = if version.starts_with("9P2000.u") {
                    self.dotu = true;
                    "9P2000.u"
                } else if version.starts_with("9P2000") {
                    self.dotu = false;
                    "9P2000"
                } else {
                    "unknown"
                };
                Ok(Rmsg::Version {
                    msize: self.msize,
                    version: version.into(),
                })
            }
            Tmsg::Auth { .. } => Err(fail("no authentication required", libc::EACCES)),
            Tmsg::Attach { fid, afid, .. } => {
                if afid != m::NOFID {
                    return Err(fail("no authentication required", libc::EACCES));
                }
                if self.fids.contains_key(&fid) {
                    return Err(fail("fid already in use", libc::EBADF));
                }
                let attr = self.browser.getattr(ROOT)?;
                self.fids.insert(
                    fid,
                    Fid {
                        ino: ROOT,
                        open: None,
                    },
                );
                Ok(Rmsg::Attach { qid: qid_of(&attr) })
            }
            Tmsg::Flush { .. } => Ok(Rmsg::Flush),
            Tmsg::Walk { fid, newfid, names } => self.walk(fid, newfid, &names),
            Tmsg::Open { fid, mode } => self.open(fid, mode),
            Tmsg::Read { fid, offset, count } => self.read(fid, offset, count),
            Tmsg::Clunk { fid } => {
                self.fids
                    .remove(&fid)
                    .ok_or_else(|| fail("unknown fid", libc::EBADF))?;
                Ok(Rmsg::Clunk)
            }
            Tmsg::Stat { fid } => {
                let ino = self.fid(fid)?.ino;
                let attr = self.browser.getattr(ino)?;
                let name = self.name_of(ino);
                Ok(Rmsg::Stat {
                    stat: self.stat(&attr, name),
                })
            }
            Tmsg::Remove { fid } => {
                // Remove clunks the fid even when it fails.
                self.fids.remove(&fid);
                Err(read_only())
            }
            Tmsg::Create { .. } | Tmsg::Write { .. } | Tmsg::Wstat { .. } => Err(read_only()),
        }
    }

    fn name_of(&self, ino: Ino) -> Vec<u8> {
        if ino == ROOT {
            return b"/".to_vec();
        }
        let path = self.browser.path_of(ino);
        path.file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_else(|| b"/".to_vec())
    }

    fn walk(&mut self, fid: u32, newfid: u32, names: &[Vec<u8>]) -> Result<Rmsg, Failure> {
        let from = self.fid(fid)?;
        if from.open.is_some() {
            return Err(fail("walk from an open fid", libc::EBADF));
        }
        let start = from.ino;
        if newfid != fid && self.fids.contains_key(&newfid) {
            return Err(fail("fid already in use", libc::EBADF));
        }
        let mut here = start;
        let mut qids = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let step = match name.as_slice() {
                // Nothing above the top: `..` there is the top itself.
                b".." => self
                    .browser
                    .parent(here)
                    .and_then(|p| self.browser.getattr(p)),
                b"." => Err(BrowseError::NotFound),
                _ => self.browser.lookup(here, name),
            };
            match step {
                Ok(a) => {
                    here = a.ino;
                    qids.push(qid_of(&a));
                }
                // The first element failing is an error; a later one
                // ends the walk short, and newfid is not made.
                Err(e) if i == 0 => return Err(e.into()),
                Err(_) => return Ok(Rmsg::Walk { qids }),
            }
        }
        self.fids.insert(
            newfid,
            Fid {
                ino: here,
                open: None,
            },
        );
        Ok(Rmsg::Walk { qids })
    }

    fn open(&mut self, fid: u32, mode: u8) -> Result<Rmsg, Failure> {
        // OREAD 0 and OEXEC 3 read; OWRITE, ORDWR, OTRUNC and ORCLOSE
        // would change something.
        if mode & 3 == 1 || mode & 3 == 2 || mode & 0x50 != 0 {
            return Err(fail("read-only file system", libc::EROFS));
        }
        let ino = self.fid(fid)?.ino;
        if self.fid(fid)?.open.is_some() {
            return Err(fail("fid already open", libc::EBADF));
        }
        let attr = self.browser.getattr(ino)?;
        let opened = match attr.kind {
            Kind::Dir => Opened::Dir {
                listing: self.browser.readdir(ino)?,
                next: 0,
                offset: 0,
            },
            // Links, devices and fifos read as empty.
            _ => Opened::File(Sequence::default()),
        };
        self.fid(fid)?.open = Some(opened);
        Ok(Rmsg::Open {
            qid: qid_of(&attr),
            iounit: self.msize - m::READ_OVERHEAD as u32,
        })
    }

    fn read(&mut self, fid: u32, offset: u64, count: u32) -> Result<Rmsg, Failure> {
        let count = count.min(self.msize - m::READ_OVERHEAD as u32) as usize;
        let browser = Arc::clone(&self.browser);
        let dotu = self.dotu;
        let f = self.fid(fid)?;
        let ino = f.ino;
        match f.open.as_mut() {
            None => Err(fail("fid not open", libc::EBADF)),
            Some(Opened::File(seq)) => {
                let data = match browser.read(ino, offset, count, seq) {
                    // A 9P2000.u client reads a link's target from stat;
                    // a read of anything but a file is empty.
                    Err(BrowseError::NotFile) => Vec::new(),
                    other => other?,
                };
                Ok(Rmsg::Read { data })
            }
            Some(Opened::Dir {
                listing,
                next,
                offset: at,
            }) => {
                if offset == 0 {
                    *next = 0;
                    *at = 0;
                } else if offset != *at {
                    return Err(fail("bad offset in directory read", libc::EINVAL));
                }
                let mut data = Vec::new();
                while *next < listing.len() {
                    let l = &listing[*next];
                    let mut one = Vec::new();
                    codec::encode_stat(&stat_of(&l.attr, l.name.clone(), dotu), dotu, &mut one);
                    if data.len() + one.len() > count {
                        if data.is_empty() {
                            return Err(fail("directory entry larger than the read", libc::EINVAL));
                        }
                        break;
                    }
                    data.extend_from_slice(&one);
                    *next += 1;
                }
                *at += data.len() as u64;
                Ok(Rmsg::Read { data })
            }
        }
    }

    fn stat(&self, a: &Attr, name: Vec<u8>) -> Stat {
        stat_of(a, name, self.dotu)
    }
}

/// `a`, named `name`, as a 9P stat.
fn stat_of(a: &Attr, name: Vec<u8>, dotu: bool) -> Stat {
    let mut mode = a.mode & 0o777;
    let mut extension = Vec::new();
    match a.kind {
        Kind::Dir => mode |= m::DMDIR,
        Kind::Symlink if dotu => {
            mode |= m::DMSYMLINK;
            extension = a.target.clone();
        }
        Kind::CharDevice | Kind::BlockDevice if dotu => {
            mode |= m::DMDEVICE;
            let c = if a.kind == Kind::CharDevice { 'c' } else { 'b' };
            let (major, minor) = (libc::major(a.rdev), libc::minor(a.rdev));
            extension = format!("{c} {major} {minor}").into_bytes();
        }
        Kind::Fifo if dotu => mode |= m::DMNAMEDPIPE,
        _ => {}
    }
    if dotu {
        if a.mode & libc::S_ISUID != 0 {
            mode |= m::DMSETUID;
        }
        if a.mode & libc::S_ISGID != 0 {
            mode |= m::DMSETGID;
        }
    }
    let secs = a
        .mtime_ns
        .div_euclid(1_000_000_000)
        .clamp(0, u32::MAX as i64) as u32;
    let or_id = |name: &str, id: u32| {
        if name.is_empty() {
            id.to_string()
        } else {
            name.to_string()
        }
    };
    Stat {
        qid: qid_of(a),
        mode,
        atime: secs,
        mtime: secs,
        length: if a.kind == Kind::File { a.size } else { 0 },
        name,
        uid: or_id(&a.user, a.uid),
        gid: or_id(&a.group, a.gid),
        muid: String::new(),
        extension,
        n_uid: a.uid,
        n_gid: a.gid,
        n_muid: a.uid,
        ..Stat::default()
    }
}
