//! `eventi serve-9p` with the real binary: a 9P2000 client written here
//! (not eventi's codec) walks, stats and reads a served snapshot over TCP
//! on loopback and compares it with its source; plan9port's `9p` does the
//! same where `$PLAN9` names an installation; bad input gets Rerror or a
//! closed connection, and the server goes on.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::Duration;

use eventi_tests::{compressible, output_text, pattern, run_eventi, spawn_eventi};

const PASS: &str = "nine";

fn eventi(home: &Path, args: &[&str]) -> Output {
    let o = run_eventi(home, &[("EVENTI_PASSPHRASE", PASS)], args);
    assert!(o.status.success(), "eventi {args:?}: {}", output_text(&o));
    o
}

/// A running `eventi serve-9p` and its address.
struct Served {
    child: Child,
    addr: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(home: &Path, spec: &str) -> Served {
    let mut child = spawn_eventi(
        home,
        &[("EVENTI_PASSPHRASE", PASS)],
        ["serve-9p", "--listen", "127.0.0.1:0", spec],
    );
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(!line.is_empty(), "serve-9p printed no address");
    Served {
        child,
        addr: line.trim().to_string(),
    }
}

/// A minimal 9P2000 client: messages built and parsed by hand.
struct Client {
    s: TcpStream,
    tag: u16,
}

fn s16(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

/// A parsed stat: (qid type, qid path, mode, mtime, length, name, uid).
#[derive(Debug)]
struct St {
    qtype: u8,
    qpath: u64,
    mode: u32,
    mtime: u32,
    length: u64,
    name: Vec<u8>,
    uid: String,
}

fn parse_stat(b: &[u8]) -> (St, usize) {
    let size = u16::from_le_bytes([b[0], b[1]]) as usize;
    let u32at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let u64at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    // size[2] type[2] dev[4] qid[13] mode[4] atime[4] mtime[4] length[8]
    let qtype = b[8];
    let qpath = u64at(13);
    let mode = u32at(21);
    let mtime = u32at(29);
    let length = u64at(33);
    let mut at = 41;
    let mut string = || {
        let n = u16::from_le_bytes([b[at], b[at + 1]]) as usize;
        let s = b[at + 2..at + 2 + n].to_vec();
        at += 2 + n;
        s
    };
    let name = string();
    let uid = String::from_utf8(string()).unwrap();
    (
        St {
            qtype,
            qpath,
            mode,
            mtime,
            length,
            name,
            uid,
        },
        size + 2,
    )
}

impl Client {
    fn connect(addr: &str) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut c = Client { s, tag: 0 };
        let mut body = 8192u32.to_le_bytes().to_vec();
        s16(&mut body, b"9P2000");
        let (t, r) = c.rpc_tagged(100, 0xffff, &body);
        assert_eq!(t, 101, "Rversion");
        assert_eq!(&r[6..12], b"9P2000");
        let mut body = 0u32.to_le_bytes().to_vec(); // fid 0
        body.extend_from_slice(&u32::MAX.to_le_bytes()); // no afid
        s16(&mut body, b"tester");
        s16(&mut body, b"");
        let (t, _) = c.rpc(104, &body);
        assert_eq!(t, 105, "Rattach");
        c
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    fn recv(&mut self) -> Option<(u8, u16, Vec<u8>)> {
        let mut size = [0u8; 4];
        self.s.read_exact(&mut size).ok()?;
        let n = u32::from_le_bytes(size) as usize;
        let mut rest = vec![0u8; n - 4];
        self.s.read_exact(&mut rest).ok()?;
        let tag = u16::from_le_bytes([rest[1], rest[2]]);
        Some((rest[0], tag, rest[3..].to_vec()))
    }

    fn rpc_tagged(&mut self, kind: u8, tag: u16, body: &[u8]) -> (u8, Vec<u8>) {
        let mut m = ((body.len() + 7) as u32).to_le_bytes().to_vec();
        m.push(kind);
        m.extend_from_slice(&tag.to_le_bytes());
        m.extend_from_slice(body);
        self.send_raw(&m);
        let (k, t, r) = self.recv().expect("a reply");
        assert_eq!(t, tag, "the reply's tag");
        (k, r)
    }

    fn rpc(&mut self, kind: u8, body: &[u8]) -> (u8, Vec<u8>) {
        self.tag += 1;
        let tag = self.tag;
        self.rpc_tagged(kind, tag, body)
    }

    /// Walks `names` from fid 0 to `newfid`: the qid types and paths walked.
    fn walk(&mut self, newfid: u32, names: &[&[u8]]) -> Result<Vec<(u8, u64)>, String> {
        let mut body = 0u32.to_le_bytes().to_vec();
        body.extend_from_slice(&newfid.to_le_bytes());
        body.extend_from_slice(&(names.len() as u16).to_le_bytes());
        for n in names {
            s16(&mut body, n);
        }
        let (k, r) = self.rpc(110, &body);
        if k == 107 {
            return Err(error_text(&r));
        }
        assert_eq!(k, 111, "Rwalk");
        let n = u16::from_le_bytes([r[0], r[1]]) as usize;
        Ok((0..n)
            .map(|i| {
                let q = &r[2 + 13 * i..2 + 13 * (i + 1)];
                (q[0], u64::from_le_bytes(q[5..13].try_into().unwrap()))
            })
            .collect())
    }

    fn clunk(&mut self, fid: u32) {
        let (k, _) = self.rpc(120, &fid.to_le_bytes());
        assert_eq!(k, 121, "Rclunk");
    }

    fn stat(&mut self, fid: u32) -> St {
        let (k, r) = self.rpc(124, &fid.to_le_bytes());
        assert_eq!(k, 125, "Rstat: {}", error_text(&r));
        parse_stat(&r[2..]).0
    }

    fn open(&mut self, fid: u32, mode: u8) -> Result<(), String> {
        let mut body = fid.to_le_bytes().to_vec();
        body.push(mode);
        match self.rpc(112, &body) {
            (113, _) => Ok(()),
            (_, r) => Err(error_text(&r)),
        }
    }

    fn read(&mut self, fid: u32, offset: u64, count: u32) -> Result<Vec<u8>, String> {
        let mut body = fid.to_le_bytes().to_vec();
        body.extend_from_slice(&offset.to_le_bytes());
        body.extend_from_slice(&count.to_le_bytes());
        match self.rpc(116, &body) {
            (117, r) => {
                let n = u32::from_le_bytes(r[..4].try_into().unwrap()) as usize;
                Ok(r[4..4 + n].to_vec())
            }
            (_, r) => Err(error_text(&r)),
        }
    }

    /// A whole file or directory, read in `count`-byte reads.
    fn read_all(&mut self, fid: u32) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let got = self.read(fid, out.len() as u64, 8000).unwrap();
            if got.is_empty() {
                return out;
            }
            out.extend_from_slice(&got);
        }
    }

    /// The entries of the directory at `path` (fid 0 is the top).
    fn list(&mut self, path: &[&[u8]]) -> Vec<St> {
        self.walk(9, path).unwrap();
        self.open(9, 0).unwrap();
        let bytes = self.read_all(9);
        self.clunk(9);
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let (st, n) = parse_stat(&bytes[at..]);
            out.push(st);
            at += n;
        }
        out
    }
}

fn error_text(r: &[u8]) -> String {
    let n = u16::from_le_bytes([r[0], r[1]]) as usize;
    String::from_utf8_lossy(&r[2..2 + n]).into_owned()
}

fn tree(src: &Path) {
    std::fs::create_dir_all(src.join("dir/sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"over nine p\n").unwrap();
    std::fs::write(src.join("dir/sub/big.bin"), pattern(17, 300_000)).unwrap();
    // Stored as frames in pieces: reads cross leaves of several blocks.
    std::fs::write(src.join("dir/sub/words.txt"), compressible(18, 3 << 20)).unwrap();
    std::fs::write(src.join("dir/empty"), b"").unwrap();
}

/// Compares the served directory at `path` (names from the top) with
/// `src`, recursively: names, kinds, modes, sizes, mtimes, contents.
fn compare(c: &mut Client, path: &mut Vec<Vec<u8>>, src: &Path, seen: &mut usize) {
    use std::os::unix::ffi::OsStrExt;
    let names: Vec<&[u8]> = path.iter().map(|p| p.as_slice()).collect();
    let listed = c.list(&names);
    let mut want: Vec<_> = std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    want.sort();
    let got: Vec<Vec<u8>> = listed.iter().map(|s| s.name.clone()).collect();
    assert_eq!(got, want, "entries of {}", src.display());
    for st in listed {
        let p = src.join(std::ffi::OsStr::from_bytes(&st.name));
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!(st.mode & 0o777, m.mode() & 0o777, "mode of {}", p.display());
        assert_eq!(st.mtime as i64, m.mtime(), "mtime of {}", p.display());
        path.push(st.name.clone());
        if m.is_dir() {
            assert_eq!(st.qtype, 0x80);
            assert_eq!(st.mode & 0x8000_0000, 0x8000_0000);
            compare(
                c,
                path,
                src.join(std::ffi::OsStr::from_bytes(&st.name)).as_path(),
                seen,
            );
        } else {
            assert_eq!(st.length, m.len(), "length of {}", p.display());
            let names: Vec<&[u8]> = path.iter().map(|p| p.as_slice()).collect();
            let qids = c.walk(5, &names).unwrap();
            assert_eq!(qids.last().unwrap().1, st.qpath, "walk and read agree");
            c.open(5, 0).unwrap();
            assert!(
                c.read_all(5) == std::fs::read(&p).unwrap(),
                "content of {}",
                p.display()
            );
            c.clunk(5);
        }
        path.pop();
        *seen += 1;
    }
}

fn served_source(dir: &Path) -> (PathBuf, PathBuf, String) {
    let (home, src) = (dir.join("home"), dir.join("src"));
    tree(&src);
    let snap = eventi_tests::last_line(&eventi(&home, &["backup", src.to_str().unwrap()]));
    (home, src.clone(), format!("{snap}:{}", src.display()))
}

#[test]
fn a_9p_client_walks_stats_and_reads_the_served_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (home, src, spec) = served_source(dir.path());
    let served = serve(&home, &spec);
    let mut c = Client::connect(&served.addr);
    let top = c.stat(0);
    assert_eq!(top.qtype, 0x80, "the top is a directory");
    let mut seen = 0;
    compare(&mut c, &mut Vec::new(), &src, &mut seen);
    assert_eq!(seen, 6);
    // `..` above the top is the top.
    let qids = c.walk(3, &[b"..", b"..", b"dir"]).unwrap();
    assert_eq!(qids[0].1, top.qpath);
    assert_eq!(qids[1].1, top.qpath);
    c.clunk(3);
    let qids = c.walk(3, &[b"dir", b"sub", b"..", b".."]).unwrap();
    assert_eq!(qids[3].1, top.qpath);
    // A walk that fails part-way: the qids so far, and no new fid.
    let qids = c.walk(4, &[b"dir", b"missing"]).unwrap();
    assert_eq!(qids.len(), 1);
    assert!(c.stat_err(4).contains("unknown fid"));
    assert!(c
        .walk(4, &[b"missing"])
        .unwrap_err()
        .contains("no such file"));
    // Nothing can be written, created or removed.
    c.walk(6, &[b"a.txt"]).unwrap();
    assert!(c.open(6, 1).unwrap_err().contains("read-only"));
    assert!(c.open(6, 0x10).unwrap_err().contains("read-only"));
    assert!(!c.stat(6).uid.is_empty(), "an owner is named");
}

impl Client {
    fn stat_err(&mut self, fid: u32) -> String {
        let (k, r) = self.rpc(124, &fid.to_le_bytes());
        assert_eq!(k, 107, "Rerror");
        error_text(&r)
    }
}

#[test]
fn bad_9p_input_gets_rerror_or_a_close_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (home, _src, spec) = served_source(dir.path());
    let served = serve(&home, &spec);

    // Unknown type, a reply's type, a walk of 17 names, trailing bytes,
    // an unknown fid: each an Rerror with the request's tag.
    let mut c = Client::connect(&served.addr);
    for (kind, body) in [
        (200u8, vec![]),
        (101, vec![0, 0, 0, 0]),
        (120, vec![9, 0, 0, 0, 1]),
        (124, vec![77, 0, 0, 0]),
    ] {
        let (k, r) = c.rpc(kind, &body);
        assert_eq!(k, 107, "type {kind}: Rerror");
        assert!(!error_text(&r).is_empty());
    }
    let mut walk = 0u32.to_le_bytes().to_vec();
    walk.extend_from_slice(&1u32.to_le_bytes());
    walk.extend_from_slice(&17u16.to_le_bytes());
    for _ in 0..17 {
        s16(&mut walk, b"a");
    }
    let (k, r) = c.rpc(110, &walk);
    assert_eq!(k, 107);
    assert!(error_text(&r).contains("16"), "{}", error_text(&r));
    // A message too short for its own fields.
    let (k, _) = c.rpc(116, &[1, 2]);
    assert_eq!(k, 107);
    // An msize no stat fits in.
    let mut tiny = 100u32.to_le_bytes().to_vec();
    s16(&mut tiny, b"9P2000");
    let (k, r) = c.rpc_tagged(100, 0xffff, &tiny);
    assert_eq!(k, 107, "Rerror");
    assert!(error_text(&r).contains("msize"), "{}", error_text(&r));
    // The session still works.
    assert_eq!(c.stat(0).qtype, 0x80);

    // Oversized: the connection is closed.
    let mut big = Client::connect(&served.addr);
    big.send_raw(&(1u32 << 30).to_le_bytes());
    big.send_raw(&[116, 1, 0]);
    assert!(big.recv().is_none(), "closed after an oversized frame");
    // Too small to hold a header: closed.
    let mut small = Client::connect(&served.addr);
    small.send_raw(&[3, 0, 0, 0]);
    assert!(small.recv().is_none());
    // Truncated: the client goes away inside a frame.
    let mut cut = Client::connect(&served.addr);
    cut.send_raw(&[100, 0, 0, 0, 116, 1, 0, 0]);
    drop(cut);

    // The server goes on: a new client reads a file.
    let mut c = Client::connect(&served.addr);
    c.walk(2, &[b"a.txt"]).unwrap();
    c.open(2, 0).unwrap();
    assert_eq!(c.read_all(2), b"over nine p\n");
}

#[test]
fn a_damaged_block_is_an_rerror_for_its_file_only() {
    let dir = tempfile::tempdir().unwrap();
    let (home, src) = (dir.path().join("home"), dir.path().join("src"));
    std::fs::create_dir_all(&src).unwrap();
    // The big file is most of the log: the damage lands in it.
    std::fs::write(src.join("big.bin"), pattern(23, 4 << 20)).unwrap();
    std::fs::write(src.join("note.txt"), b"still here\n").unwrap();
    let snap = eventi_tests::last_line(&eventi(&home, &["backup", src.to_str().unwrap()]));
    eventi_tests::damage_log(&home.join("store"));
    let mut served = serve(&home, &format!("{snap}:{}", src.display()));
    let mut c = Client::connect(&served.addr);
    c.walk(2, &[b"big.bin"]).unwrap();
    c.open(2, 0).unwrap();
    let mut failed = None;
    for offset in (0..4u64 << 20).step_by(8000) {
        if let Err(e) = c.read(2, offset, 8000) {
            failed = Some(e);
            break;
        }
    }
    let failed = failed.expect("a read of the damaged file fails");
    assert!(failed.contains("big.bin"), "{failed}");
    c.walk(3, &[b"note.txt"]).unwrap();
    c.open(3, 0).unwrap();
    assert_eq!(c.read_all(3), b"still here\n");
    served.child.kill().unwrap();
    let mut log = String::new();
    served
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("/big.bin") && log.contains("store"), "{log}");
}

#[test]
fn plan9ports_9p_lists_and_reads_the_served_snapshot() {
    let Some(plan9) = std::env::var_os("PLAN9") else {
        eprintln!("skipping: PLAN9 is not set (plan9port's 9p is not installed here)");
        return;
    };
    let nine = Path::new(&plan9).join("bin/9p");
    if !nine.exists() {
        eprintln!("skipping: {} is missing", nine.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (home, src, spec) = served_source(dir.path());
    let served = serve(&home, &spec);
    let port = served.addr.rsplit(':').next().unwrap();
    let address = format!("tcp!127.0.0.1!{port}");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(&nine)
            .env("PLAN9", &plan9)
            .arg("-a")
            .arg(&address)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "9p {args:?}: {}", output_text(&o));
        o.stdout
    };
    let listed = String::from_utf8(run(&["ls", "/"])).unwrap();
    let mut names: Vec<&str> = listed.lines().collect();
    names.sort();
    assert_eq!(names, ["a.txt", "dir"]);
    let long = String::from_utf8(run(&["ls", "-l", "dir/sub"])).unwrap();
    assert!(long.contains("300000"), "{long}");
    assert_eq!(run(&["read", "a.txt"]), b"over nine p\n");
    assert!(
        run(&["read", "dir/sub/big.bin"]) == std::fs::read(src.join("dir/sub/big.bin")).unwrap()
    );
    let stat = String::from_utf8(run(&["stat", "a.txt"])).unwrap();
    assert!(stat.contains("a.txt"), "{stat}");
}
