//! plan9port's own tools against eventi-server: venti/write, venti/read,
//! venti/copy, vac, unvac. Needs a plan9port installation named by
//! `$PLAN9`; without one each test prints why it skipped.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use eventi_tests::plan9port::tool;
use eventi_tests::{need_plan9, Server};

/// Compares two byte strings by length and SHA-1, so a failure prints two
/// lines rather than megabytes.
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    let (g, w) = (
        eventi_shared::Score::of(got),
        eventi_shared::Score::of(want),
    );
    assert!(
        got.len() == want.len() && g == w,
        "{what}: got {} bytes (sha1 {g}), want {} bytes (sha1 {w})",
        got.len(),
        want.len()
    );
}

fn dial(server: &Server) -> String {
    format!("tcp!{}!{}", server.addr.ip(), server.addr.port())
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn run_with_stdin(mut cmd: Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn venti_write_read_and_copy() {
    let plan9 = need_plan9!();
    let dir = tempfile::tempdir().unwrap();
    let a = Server::start(&dir.path().join("a"), &[]);
    let b = Server::start(&dir.path().join("b"), &[]);
    let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();

    let mut w = tool(&plan9, "venti/write");
    w.args(["-h", &dial(&a), "-t", "0"]);
    let score = ok(run_with_stdin(w, &data), "venti/write");
    let score = score.trim();
    assert_eq!(score, eventi_shared::Score::of(&data).to_string());

    let mut r = tool(&plan9, "venti/read");
    r.args(["-h", &dial(&a), "-t", "0", score]);
    let back = r.output().unwrap();
    assert!(
        back.status.success(),
        "{}",
        String::from_utf8_lossy(&back.stderr)
    );
    assert_same(&back.stdout, &data, "venti/read");

    let mut cp = tool(&plan9, "venti/copy");
    cp.args(["-t", "0", &dial(&a), &dial(&b), score]);
    ok(cp.output().unwrap(), "venti/copy");
    let mut r = tool(&plan9, "venti/read");
    r.args(["-h", &dial(&b), "-t", "0", score]);
    assert_same(
        &r.output().unwrap().stdout,
        &data,
        "venti/read after venti/copy",
    );
}

#[test]
fn vac_and_unvac_round_trip_a_tree() {
    let plan9 = need_plan9!();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::write(src.join("small.txt"), b"hello venti\n").unwrap();
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(src.join("sub/big.bin"), &big).unwrap();
    std::fs::write(src.join("sub/deeper/empty"), b"").unwrap();

    let vacfile = dir.path().join("tree.vac");
    let mut vac = tool(&plan9, "vac");
    vac.current_dir(&src)
        .args(["-h", &dial(&server), "-f"])
        .arg(&vacfile)
        .args(["small.txt", "sub"]);
    ok(vac.output().unwrap(), "vac");

    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut unvac = tool(&plan9, "unvac");
    unvac
        .current_dir(&out)
        .args(["-h", &dial(&server)])
        .arg(&vacfile);
    ok(unvac.output().unwrap(), "unvac");
    assert_eq!(
        std::fs::read(out.join("small.txt")).unwrap(),
        b"hello venti\n"
    );
    assert_same(
        &std::fs::read(out.join("sub/big.bin")).unwrap(),
        &big,
        "unvac big.bin",
    );
    assert_eq!(std::fs::read(out.join("sub/deeper/empty")).unwrap(), b"");
}

#[test]
fn vbackup_and_vcat_round_trip_an_ext2_image() {
    let plan9 = need_plan9!();
    let Some(mke2fs) = ["/usr/sbin/mke2fs", "/sbin/mke2fs"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    else {
        eprintln!("skipped: mke2fs not found (Debian package e2fsprogs)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/a.txt"), b"vbackup through eventi\n").unwrap();
    let noise: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2246822519) >> 11) as u8)
        .collect();
    std::fs::write(src.join("noise.bin"), &noise).unwrap();
    let image = dir.path().join("disk.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let made = Command::new(&mke2fs)
        .args(["-q", "-F", "-t", "ext2", "-b", "4096", "-d"])
        .arg(&src)
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    let mut backup = tool(&plan9, "vbackup");
    backup.env("venti", dial(&server)).arg(&image);
    let out = ok(backup.output().unwrap(), "vbackup");
    // vbackup prints "mount /vm/... ext2:SCORE DATE"
    let score = out
        .split_whitespace()
        .find(|w| w.starts_with("ext2:"))
        .unwrap_or_else(|| panic!("no ext2:SCORE in {out:?}"))
        .to_string();

    // vcat writes the image with pwrite (sparse), so stdout must be a file.
    let restored_path = dir.path().join("restored.img");
    let mut cat = tool(&plan9, "vcat");
    cat.env("venti", dial(&server))
        .arg(&score)
        .stdout(std::fs::File::create(&restored_path).unwrap())
        .stderr(Stdio::piped());
    let done = cat.output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_same(
        &std::fs::read(&restored_path).unwrap(),
        &std::fs::read(&image).unwrap(),
        "vcat image",
    );
}

#[test]
fn a_server_that_requires_encrypted_writes_refuses_plan9port_writes_and_still_serves_reads() {
    let plan9 = need_plan9!();
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let path = dir.path().join("a");
    // Written in clear while the server allows it, then the operator
    // requires encryption for writes.
    let open = Server::start(&path, &[]);
    let mut w = tool(&plan9, "venti/write");
    w.args(["-h", &dial(&open), "-t", "0"]);
    let score = ok(run_with_stdin(w, &data), "venti/write");
    drop(open);
    let strict = Server::start(&path, &["--require-encryption", "writes"]);
    let mut w = tool(&plan9, "venti/write");
    w.args(["-h", &dial(&strict), "-t", "0"]);
    let refused = run_with_stdin(w, b"something new");
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("writes only in an encrypted session"),
        "plan9port's venti/write shows the server's reason: {why}"
    );
    let mut r = tool(&plan9, "venti/read");
    r.args(["-h", &dial(&strict), "-t", "0", score.trim()]);
    let back = r.output().unwrap();
    assert!(
        back.status.success(),
        "{}",
        String::from_utf8_lossy(&back.stderr)
    );
    assert_same(&back.stdout, &data, "venti/read in clear");
}
