//! `eventi mount` on the real filesystem: real backups mounted with FUSE
//! (where this machine has `/dev/fuse` and `fusermount3`; each test says
//! why it skips elsewhere), compared with their source by `diff -r` and
//! by `lstat` of every entry, read at random, mounted from a capability by
//! a process with an empty HOME, and read with a damaged block.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use eventi_tests::{
    damage_log, eventi_command, keys_cli, output_text, pattern, run_eventi, Server,
};

const PASS: &str = "mount me";

fn eventi(home: &Path, args: &[&str]) -> Output {
    let o = run_eventi(home, &[("EVENTI_PASSPHRASE", PASS)], args);
    assert!(o.status.success(), "eventi {args:?}: {}", output_text(&o));
    o
}

fn last_line(o: &Output) -> String {
    eventi_tests::last_line(o)
}

/// Why FUSE cannot be tested here, if it cannot.
fn no_fuse() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("this machine has no /dev/fuse".into());
    }
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("fusermount3").exists()))
        .unwrap_or(false);
    if !found {
        return Some("fusermount3 is not installed (Debian package fuse3)".into());
    }
    None
}

macro_rules! need_fuse {
    () => {
        if let Some(why) = no_fuse() {
            eprintln!("skipping: {why}");
            return;
        }
    };
}

/// A running `eventi mount`.
struct Mounted {
    child: Option<Child>,
    dir: PathBuf,
    log: PathBuf,
}

fn is_mounted(dir: &Path) -> bool {
    let parent = dir.parent().expect("a parent");
    match (fs::metadata(dir), fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => false,
    }
}

fn unmount(dir: &Path) -> Output {
    Command::new("fusermount3")
        .arg("-u")
        .arg(dir)
        .output()
        .expect("running fusermount3")
}

impl Mounted {
    /// Starts `command` (an `eventi mount` on `dir`), its stderr into
    /// `log`, and waits until the mount is up. `Err` is the log of a
    /// mount that could not start.
    fn start(mut command: Command, dir: &Path, log: &Path) -> Result<Mounted, String> {
        fs::create_dir_all(dir).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(log).unwrap())
            .spawn()
            .expect("start eventi mount");
        let mut m = Mounted {
            child: Some(child),
            dir: dir.to_path_buf(),
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !is_mounted(dir) {
            let exited = m.child.as_mut().unwrap().try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                m.child.take().map(|mut c| c.kill());
                return Err(fs::read_to_string(log).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(m)
    }

    /// [`Mounted::start`], skipping (`None`, reason printed) where the
    /// kernel refuses this process a mount.
    fn start_or_skip(command: Command, dir: &Path, log: &Path) -> Option<Mounted> {
        match Mounted::start(command, dir, log) {
            Ok(m) => Some(m),
            // The mount itself refused (fusermount3 or the kernel: no
            // permission, no fuse module): the machine, not eventi.
            Err(text)
                if text.contains("not permitted")
                    || text.contains("Permission denied")
                    || text.contains("eventi: mounting on") =>
            {
                eprintln!("skipping: this process may not mount FUSE filesystems here: {text}");
                None
            }
            Err(text) => panic!("eventi mount did not come up: {text}"),
        }
    }

    /// Waits for the mount process to end; its exit status and log.
    fn wait(mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "eventi mount did not end");
            std::thread::sleep(Duration::from_millis(50));
        };
        (status, fs::read_to_string(&self.log).unwrap())
    }

    /// Sends SIGTERM and waits for a clean end.
    fn terminate(self) -> String {
        let pid = self.child.as_ref().unwrap().id() as i32;
        // SAFETY: signalling the child this test started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let dir = self.dir.clone();
        let (status, log) = self.wait();
        assert!(status.success(), "mount ended with {status}: {log}");
        assert!(!is_mounted(&dir), "still mounted after SIGTERM");
        log
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = unmount(&self.dir);
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Mounts `spec` of `home`'s chain on `<dir>/mnt`, logging to
/// `<dir>/mount.log`; `None` where this machine may not mount (the
/// reason printed).
fn mount_spec(home: &Path, dir: &Path, spec: &str) -> Option<(Mounted, PathBuf)> {
    let mnt = dir.join("mnt");
    let m = Mounted::start_or_skip(
        mount_command(home, &mnt, &[spec]),
        &mnt,
        &dir.join("mount.log"),
    )?;
    Some((m, mnt))
}

fn mount_command(home: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut c = eventi_command(home, &[("EVENTI_PASSPHRASE", PASS)], ["mount"]);
    c.arg(dir).args(args);
    c
}

/// A tree with an entry of every kind: files of several modes, an empty
/// file and directory, nested directories, symbolic links (one
/// dangling), two hard links to one file, a fifo, a name that is not
/// UTF-8, and an extended attribute where the filesystem takes them.
fn every_kind(src: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    fs::create_dir_all(src.join("dir/sub")).unwrap();
    fs::create_dir_all(src.join("empty-dir")).unwrap();
    fs::write(src.join("a.txt"), b"hello, mount\n").unwrap();
    fs::set_permissions(src.join("a.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(src.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(src.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(src.join("empty"), b"").unwrap();
    fs::write(src.join("dir/sub/deep.bin"), pattern(5, 700_000)).unwrap();
    fs::write(src.join("dir/linked"), pattern(6, 90_000)).unwrap();
    fs::hard_link(src.join("dir/linked"), src.join("also-linked")).unwrap();
    std::os::unix::fs::symlink("../a.txt", src.join("dir/link")).unwrap();
    std::os::unix::fs::symlink("nowhere", src.join("dangling")).unwrap();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9");
    fs::write(src.join(name), b"latin-1").unwrap();
    let fifo = std::ffi::CString::new(src.join("pipe.fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C string; mkfifo has no other preconditions.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    eventi::fsmeta::set_xattr(&src.join("a.txt"), b"user.eventi", b"kept").is_ok()
}

/// Every entry below `src` and `mounted`, by `lstat`: the same type,
/// mode, owner, size, mtime and link count, the same link targets and
/// extended attributes; hard links one inode in the mount too.
fn assert_same_stat(src: &Path, mounted: &Path) {
    let mut inodes = std::collections::HashMap::new();
    let mut stack = vec![PathBuf::new()];
    let mut seen = 0;
    while let Some(rel) = stack.pop() {
        let (a, b) = (src.join(&rel), mounted.join(&rel));
        let (ma, mb) = (
            fs::symlink_metadata(&a).unwrap(),
            fs::symlink_metadata(&b).unwrap(),
        );
        let what = rel.display();
        assert_eq!(ma.mode(), mb.mode(), "mode of {what}");
        assert_eq!(
            (ma.uid(), ma.gid()),
            (mb.uid(), mb.gid()),
            "owner of {what}"
        );
        assert_eq!(ma.nlink(), mb.nlink(), "link count of {what}");
        if !ma.is_dir() {
            assert_eq!(ma.len(), mb.len(), "size of {what}");
            assert_eq!(
                (ma.mtime(), ma.mtime_nsec()),
                (mb.mtime(), mb.mtime_nsec()),
                "mtime of {what}"
            );
        }
        if ma.file_type().is_symlink() {
            assert_eq!(fs::read_link(&a).unwrap(), fs::read_link(&b).unwrap());
        } else {
            assert_eq!(
                eventi::fsmeta::xattrs(&a).unwrap(),
                eventi::fsmeta::xattrs(&b).unwrap(),
                "xattrs of {what}"
            );
        }
        if ma.nlink() > 1 && !ma.is_dir() {
            // Names of one source inode: one inode in the mount.
            let prev = inodes.insert(ma.ino(), mb.ino());
            assert!(
                prev.is_none() || prev == Some(mb.ino()),
                "{what} is one inode"
            );
        }
        if ma.is_dir() {
            for e in fs::read_dir(&a).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
        }
        seen += 1;
    }
    assert!(seen > 10, "compared only {seen} entries");
    assert_eq!(inodes.len(), 1, "the hard-linked file was compared");
}

fn diff_r(src: &Path, mounted: &Path) {
    // Fifos are compared by stat: diff reports any two as different.
    let o = Command::new("diff")
        .args(["-r", "--no-dereference", "-x", "*.fifo"])
        .arg(src)
        .arg(mounted)
        .output()
        .expect("running diff");
    assert!(o.status.success(), "diff -r: {}", output_text(&o));
}

/// Where a backed-up absolute path is inside a mounted snapshot.
fn inside(mount: &Path, path: &Path) -> PathBuf {
    mount.join(path.strip_prefix("/").unwrap())
}

#[test]
fn a_mounted_snapshot_is_its_source_and_backups_go_on_beside_it() {
    need_fuse!();
    let dir = tempfile::tempdir().unwrap();
    let (home, src) = (dir.path().join("home"), dir.path().join("src"));
    let xattrs = every_kind(&src);
    if !xattrs {
        eprintln!("note: this filesystem takes no user xattrs; they are not compared");
    }
    let src_s = src.to_str().unwrap();
    let first = last_line(&eventi(&home, &["backup", src_s]));
    let Some((m, mnt)) = mount_spec(&home, dir.path(), &first) else {
        return;
    };
    let shown = inside(&mnt, &src);
    diff_r(&src, &shown);
    assert_same_stat(&src, &shown);
    // Inode numbers stay what they were within the mount.
    let again = fs::symlink_metadata(shown.join("dir/sub/deep.bin"))
        .unwrap()
        .ino();
    assert_eq!(
        again,
        fs::symlink_metadata(shown.join("dir/sub/deep.bin"))
            .unwrap()
            .ino()
    );
    // Nothing in a snapshot can change.
    assert!(fs::write(shown.join("a.txt"), b"x").is_err());
    assert!(fs::create_dir(shown.join("new")).is_err());

    // A backup of the same home runs while the snapshot is mounted.
    fs::write(src.join("a.txt"), b"changed while mounted\n").unwrap();
    let second = last_line(&eventi(&home, &["backup", src_s]));
    assert_ne!(first, second);
    // The mount still shows the first snapshot.
    assert_eq!(fs::read(shown.join("a.txt")).unwrap(), b"hello, mount\n");
    let log = m.terminate();
    assert!(log.contains("fetched"), "{log}");

    // With no snapshot named: the chain, one directory per snapshot and
    // `latest`, a link to the newest.
    let chain = dir.path().join("chain");
    let m = Mounted::start(
        mount_command(&home, &chain, &[]),
        &chain,
        &dir.path().join("chain.log"),
    )
    .expect("mounting the chain");
    let mut names: Vec<String> = fs::read_dir(&chain)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[2], "latest");
    // Both backups may fall in the same second, so the names are found
    // by their short scores rather than by their order.
    let named = |score: &str| {
        names
            .iter()
            .find(|n| n.ends_with(&score[..8]))
            .unwrap_or_else(|| panic!("no entry for {score} in {names:?}"))
            .clone()
    };
    let (older, newer) = (named(&first), named(&second));
    assert_eq!(
        fs::read_link(chain.join("latest")).unwrap(),
        Path::new(&newer)
    );
    let newest = inside(&chain.join("latest"), &src);
    assert_eq!(
        fs::read(newest.join("a.txt")).unwrap(),
        b"changed while mounted\n"
    );
    let oldest = inside(&chain.join(&older), &src);
    assert_eq!(fs::read(oldest.join("a.txt")).unwrap(), b"hello, mount\n");
    // Unmounted from outside: the process ends by itself, cleanly.
    let u = unmount(&chain);
    assert!(u.status.success(), "{}", output_text(&u));
    let (status, log) = m.wait();
    assert!(status.success(), "{log}");

    // A directory of a snapshot, whose hard link's first name
    // (`also-linked`, first in name order) lies outside it.
    let part = dir.path().join("part");
    let spec = format!("{first}:{}", src.join("dir").display());
    let m = Mounted::start(
        mount_command(&home, &part, &[&spec]),
        &part,
        &dir.path().join("part.log"),
    )
    .expect("mounting a directory of the snapshot");
    assert!(fs::read(part.join("linked")).unwrap() == pattern(6, 90_000));
    assert_eq!(
        fs::symlink_metadata(part.join("linked")).unwrap().nlink(),
        2
    );
    assert_eq!(fs::read_dir(&part).unwrap().count(), 3);
    m.terminate();
}

#[test]
fn a_random_read_fetches_only_the_blocks_it_touches() {
    need_fuse!();
    let dir = tempfile::tempdir().unwrap();
    let (home, src) = (dir.path().join("home"), dir.path().join("src"));
    fs::create_dir_all(&src).unwrap();
    let big = pattern(9, 100 << 20);
    fs::write(src.join("big.bin"), &big).unwrap();
    let src_s = src.to_str().unwrap();
    let snap = last_line(&eventi(&home, &["backup", src_s]));
    let spec = format!("{snap}:{src_s}");
    let Some((m, mnt)) = mount_spec(&home, dir.path(), &spec) else {
        return;
    };
    let file = fs::File::open(mnt.join("big.bin")).unwrap();
    let at = 50 << 20;
    let mut got = vec![0u8; 1 << 20];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut got, at).unwrap();
    assert!(
        got == big[at as usize..at as usize + (1 << 20)],
        "the bytes read"
    );
    drop(file);
    let log = m.terminate();
    let blocks = fetched_blocks(&log);
    // "fetched N blocks (B bytes)": the directory's blocks, one pointer
    // or leaf block per level above the data, and the data blocks that
    // hold the megabyte (an incompressible extent is cut into nearly
    // equal raw chunks, 28 KiB at least each), with what the kernel reads
    // ahead (1 MiB at most). The file has more than 1,800 blocks.
    let bytes: u64 = log
        .split(" blocks (")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    eprintln!("a 1 MiB read in the middle of 100 MiB fetched {blocks} blocks, {bytes} bytes");
    assert!(blocks > 16, "{log}");
    assert!(blocks <= 4 + (2 << 20) / (16 << 10) + 2, "{log}");
    assert!(bytes <= 3 << 20, "{log}");
}

/// The blocks a mount fetched, from the figures it prints at its end.
fn fetched_blocks(log: &str) -> u64 {
    let figures = log
        .lines()
        .find_map(|l| l.split("fetched ").nth(1))
        .unwrap_or_else(|| panic!("no figures in the log: {log}"));
    figures.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn ls_l_of_100000_entries_reads_no_file_data() {
    need_fuse!();
    let dir = tempfile::tempdir().unwrap();
    let (home, src) = (dir.path().join("home"), dir.path().join("src"));
    let many = src.join("many");
    fs::create_dir_all(&many).unwrap();
    let n = 100_000;
    for i in 0..n {
        // Every file's content differs: each is a data block of its own.
        fs::write(many.join(format!("f{i:06}")), format!("file {i}\n")).unwrap();
    }
    let src_s = src.to_str().unwrap();
    let snap = last_line(&eventi(&home, &["backup", src_s]));
    let spec = format!("{snap}:{src_s}");
    let Some((m, mnt)) = mount_spec(&home, dir.path(), &spec) else {
        return;
    };
    let o = Command::new("ls")
        .arg("-l")
        .arg(mnt.join("many"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert_eq!(text.lines().count(), n + 1, "a total line and every entry");
    assert!(
        text.lines()
            .any(|l| l.ends_with(" f099999") && l.contains(" 11 ")),
        "sizes shown"
    );
    let log = m.terminate();
    let blocks = fetched_blocks(&log);
    eprintln!("ls -l of {n} entries fetched {blocks} blocks");
    // The directory's stream (about 15 MB: some 500 blocks) and nothing
    // of the 100,000 files' own blocks.
    assert!(blocks < 2_000, "{log}");
}

#[test]
fn a_capability_mounts_with_an_empty_home() {
    need_fuse!();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    keys_cli(&data, &["list"]);
    let server = Server::start_strict(&data, &[]);
    let home = dir.path().join("owner");
    let addr = server.addr.to_string();
    let line = last_line(&eventi(
        &home,
        &["init", "--trust-on-first-use", "--server", &addr],
    ));
    keys_cli(&data, &["add", "owner", &line, "--quota", "10GiB"]);
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("shared/sub")).unwrap();
    fs::write(src.join("shared/a.txt"), b"for a friend\n").unwrap();
    fs::write(src.join("shared/sub/b.bin"), pattern(3, 200_000)).unwrap();
    fs::write(src.join("private.txt"), b"not shared").unwrap();
    let snap = last_line(&eventi(&home, &["backup", src.to_str().unwrap()]));
    let shared = src.join("shared");
    let cap = last_line(&eventi(
        &home,
        &["share", &format!("{snap}:{}", shared.display())],
    ));

    let empty = dir.path().join("empty-home");
    fs::create_dir_all(&empty).unwrap();
    let mnt = dir.path().join("mnt");
    let mut c = Command::new(eventi_tests::binary("eventi"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &empty)
        .arg("mount")
        .arg(&mnt)
        .arg(&cap);
    let Some(m) = Mounted::start_or_skip(c, &mnt, &dir.path().join("mount.log")) else {
        return;
    };
    // A directory's capability mounts that directory as the top.
    diff_r(&shared, &mnt);
    assert!(!mnt.join("private.txt").exists());
    m.terminate();
    assert_eq!(
        fs::read_dir(&empty).unwrap().count(),
        0,
        "nothing written to HOME"
    );
}

#[test]
fn a_damaged_block_fails_its_file_only_and_a_killed_mount_is_named_stale() {
    need_fuse!();
    let dir = tempfile::tempdir().unwrap();
    let (home, src) = (dir.path().join("home"), dir.path().join("src"));
    fs::create_dir_all(src.join("docs")).unwrap();
    // The big file is most of the log: the damage lands in it.
    fs::write(src.join("big.bin"), pattern(21, 4 << 20)).unwrap();
    fs::write(src.join("docs/note.txt"), b"still readable\n").unwrap();
    let src_s = src.to_str().unwrap();
    let snap = last_line(&eventi(&home, &["backup", src_s]));
    damage_log(&home.join("store"));
    let spec = format!("{snap}:{src_s}");
    let Some((m, mnt)) = mount_spec(&home, dir.path(), &spec) else {
        return;
    };
    let err = fs::read(mnt.join("big.bin")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert_eq!(
        fs::read(mnt.join("docs/note.txt")).unwrap(),
        b"still readable\n"
    );
    assert_eq!(fs::read_dir(&mnt).unwrap().count(), 2);
    let log = fs::read_to_string(dir.path().join("mount.log")).unwrap();
    assert!(log.contains("/big.bin"), "the log names the file: {log}");
    assert!(log.contains("store"), "the log names the store: {log}");

    // Killed: the mount point is left stale, and `eventi mount` says so.
    let mut m = m;
    let mut child = m.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let o = run_eventi(
        &home,
        &[("EVENTI_PASSPHRASE", PASS)],
        ["mount".as_ref(), mnt.as_os_str(), spec.as_ref()],
    );
    assert!(!o.status.success());
    assert!(
        output_text(&o).contains("stale mount"),
        "{}",
        output_text(&o)
    );
    let u = unmount(&mnt);
    assert!(u.status.success(), "{}", output_text(&u));
    let m2 = Mounted::start(
        mount_command(&home, &mnt, &[&spec]),
        &mnt,
        &dir.path().join("again.log"),
    )
    .expect("mounting again after fusermount3 -u");
    assert_eq!(
        fs::read(mnt.join("docs/note.txt")).unwrap(),
        b"still readable\n"
    );
    m2.terminate();
}
