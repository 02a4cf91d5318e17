//! `eventi backup` and `eventi restore` end to end, with the real binary,
//! real files in temp dirs, the embedded store and a real eventi-server.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use eventi_tests::output_text as text;
use eventi_tests::plan9port::Plan9Venti;
use eventi_tests::{
    binary, binary_copy_in, is_root, keys_cli, need_plan9, pattern, tempdir_for_nobody, Server,
    NOBODY,
};

const PASS: &str = "correct horse";

fn eventi(home: &Path, args: &[&OsStr]) -> Output {
    eventi_env(home, &[("EVENTI_PASSPHRASE", PASS)], args)
}

fn eventi_env(home: &Path, env: &[(&str, &str)], args: &[&OsStr]) -> Output {
    eventi_tests::run_eventi(home, env, args)
}

/// A temp dir with `home` and `src` (created, empty) paths in it.
fn fresh() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (home, src) = (dir.path().join("home"), dir.path().join("src"));
    fs::create_dir_all(&src).unwrap();
    (dir, home, src)
}

/// The last stdout line of a `--json` run: its summary.
fn summary(o: &Output) -> serde_json::Value {
    serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap()
}

/// The secrets in `home`'s key file.
fn secrets(home: &Path) -> eventi::keys::keyfile::Secrets {
    let key_file = eventi::keys::keyfile::read(&home.join("key")).unwrap();
    eventi::keys::keyfile::open(&key_file, PASS.as_bytes(), "key").unwrap()
}

/// `eventi init` with these servers; returns the public write key line.
fn init_with(home: &Path, servers: &[&Server]) -> String {
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    init_at(home, &addrs)
}

/// `eventi init` with servers at these addresses; returns the public write
/// key line.
fn init_at(home: &Path, servers: &[SocketAddr]) -> String {
    let addrs: Vec<String> = servers.iter().map(SocketAddr::to_string).collect();
    let mut args = vec![os("init"), os("--trust-on-first-use")];
    for a in &addrs {
        args.extend([os("--server"), os(a)]);
    }
    let o = eventi(home, &args);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Backs up `paths`; returns the root score from the last stdout line.
fn backup(home: &Path, paths: &[&Path], extra: &[&str]) -> String {
    let mut args: Vec<&OsStr> = vec![os("backup")];
    args.extend(extra.iter().map(|s| os(s)));
    args.extend(paths.iter().map(|p| p.as_os_str()));
    let o = eventi(home, &args);
    assert!(o.status.success(), "backup failed: {}", text(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let last = out.lines().last().unwrap_or("").to_string();
    assert_eq!(last.len(), 40, "the last line is the root score: {out}");
    assert!(last.bytes().all(|b| b.is_ascii_hexdigit()));
    last
}

fn restore(home: &Path, spec: &str, target: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&OsStr> = vec![os("restore"), os(spec), target.as_os_str()];
    args.extend(extra.iter().map(|s| os(s)));
    eventi(home, &args)
}

/// Restores `src` from the snapshot `snap` into `target` and checks that
/// it comes back (as `target/src`) the same as the tree on disk.
fn assert_restores(home: &Path, snap: &str, src: &Path, target: &Path) {
    let o = restore(home, &format!("{snap}:{}", src.display()), target, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_same_tree(src, &target.join(src.file_name().unwrap()));
}

fn snapshots(home: &Path) -> Vec<serde_json::Value> {
    let o = eventi(home, &[os("snapshots"), os("--json")]);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout).unwrap()
}

fn set_mtime(path: &Path, secs: i64, nsec: i64) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let ts = libc::timespec {
        tv_sec: secs,
        tv_nsec: nsec,
    };
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            [ts, ts].as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "utimensat {}", path.display());
}

/// A tree with every kind of entry the format knows.
fn every_kind(root: &Path) {
    fs::create_dir_all(root).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("big"), pattern(1, 100 << 20)).unwrap();
    fs::write(
        root.join("binary"),
        (0..=255u8).cycle().take(70_000).collect::<Vec<_>>(),
    )
    .unwrap();
    fs::write(root.join("text"), b"eventi ".repeat(20_000)).unwrap();
    // Sparse: 64 MiB with data at two places only.
    let sparse = fs::File::create(root.join("sparse")).unwrap();
    sparse.set_len(64 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, b"middle", 32 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, b"end", (64 << 20) - 3).unwrap();
    drop(sparse);
    fs::write(root.join("n".repeat(255)), b"long name").unwrap();
    fs::write(
        root.join(OsStr::from_bytes(b"caf\xe9-latin1")),
        b"not UTF-8",
    )
    .unwrap();
    fs::write(root.join("spaces and\nnewline"), b"odd name").unwrap();
    std::os::unix::fs::symlink("text", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", root.join("dangling")).unwrap();
    fs::write(root.join("hard-a"), b"one inode, two names").unwrap();
    fs::hard_link(root.join("hard-a"), root.join("hard-b")).unwrap();
    fs::create_dir(root.join("empty-dir")).unwrap();
    let mut deep = root.join("deep");
    for i in 0..40 {
        deep = deep.join(format!("level{i}"));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("bottom"), b"deep down").unwrap();
    let c = std::ffi::CString::new(root.join("fifo").as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o640) }, 0);
    fs::write(root.join("private"), b"secret").unwrap();
    fs::set_permissions(root.join("private"), fs::Permissions::from_mode(0o600)).unwrap();
    if unsafe { libc::geteuid() } == 0 {
        // Run as root, restore sets owners back: give one file another.
        std::os::unix::fs::chown(root.join("private"), Some(65534), Some(65534)).unwrap();
    }
    fs::write(root.join("script"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("script"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::create_dir(root.join("locked-dir")).unwrap();
    fs::write(root.join("locked-dir/inside"), b"x").unwrap();
    fs::set_permissions(root.join("locked-dir"), fs::Permissions::from_mode(0o750)).unwrap();
    set_mtime(&root.join("text"), 1_000_000_000, 123_456_789);
    set_mtime(&root.join("link"), 1_100_000_000, 5);
    set_mtime(&root.join("empty-dir"), 1_200_000_000, 0);
}

/// Compares two trees: kinds, bytes, modes, owners, mtimes (ns), link
/// targets, and which names share an inode.
fn assert_same_tree(a: &Path, b: &Path) {
    let mut inodes_a: HashMap<u64, PathBuf> = HashMap::new();
    let mut inodes_b: HashMap<u64, PathBuf> = HashMap::new();
    compare(a, b, Path::new(""), &mut inodes_a, &mut inodes_b);
}

fn compare(
    a: &Path,
    b: &Path,
    rel: &Path,
    ia: &mut HashMap<u64, PathBuf>,
    ib: &mut HashMap<u64, PathBuf>,
) {
    let (ma, mb) = (
        fs::symlink_metadata(a).unwrap(),
        fs::symlink_metadata(b).unwrap(),
    );
    let what = rel.display();
    assert_eq!(ma.mode(), mb.mode(), "mode of {what}");
    assert_eq!(
        (ma.uid(), ma.gid()),
        (mb.uid(), mb.gid()),
        "owner of {what}"
    );
    assert_eq!(
        ma.len() * u64::from(!ma.is_dir()),
        mb.len() * u64::from(!mb.is_dir()),
        "size of {what}"
    );
    if ma.file_type().is_symlink() {
        assert_eq!(
            fs::read_link(a).unwrap(),
            fs::read_link(b).unwrap(),
            "target of {what}"
        );
    } else if ma.is_file() {
        assert!(
            fs::read(a).unwrap() == fs::read(b).unwrap(),
            "bytes of {what}"
        );
        if ma.nlink() > 1 {
            // Names that share an inode in one tree share one in the other.
            let first_a = ia
                .entry(ma.ino())
                .or_insert_with(|| rel.to_path_buf())
                .clone();
            let first_b = ib
                .entry(mb.ino())
                .or_insert_with(|| rel.to_path_buf())
                .clone();
            assert_eq!(first_a, first_b, "hard links of {what}");
        }
    }
    if !ma.is_dir() || rel.as_os_str().is_empty() {
        // Directory mtimes are compared after their contents (below).
    }
    if ma.is_dir() {
        let mut names: Vec<_> = fs::read_dir(a)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let mut names_b: Vec<_> = fs::read_dir(b)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names_b.sort();
        assert_eq!(names, names_b, "entries of {what}");
        for n in names {
            compare(&a.join(&n), &b.join(&n), &rel.join(&n), ia, ib);
        }
    }
    assert_eq!(
        (ma.mtime(), ma.mtime_nsec()),
        (mb.mtime(), mb.mtime_nsec()),
        "mtime of {what}"
    );
}

/// Everything that exists under `restored` is exactly as in `source`
/// (no partial or garbage file), and no temporary file is left.
fn assert_nothing_wrong(source: &Path, restored: &Path) {
    for entry in fs::read_dir(restored).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        assert!(
            !name
                .as_bytes()
                .starts_with(eventi::restore::TEMP_PREFIX.as_bytes()),
            "temporary file left: {}",
            entry.path().display()
        );
        let (src, dst) = (source.join(&name), entry.path());
        let m = fs::symlink_metadata(&dst).unwrap();
        if m.is_dir() {
            assert_nothing_wrong(&src, &dst);
        } else if m.is_file() {
            assert!(
                fs::read(&src).unwrap() == fs::read(&dst).unwrap(),
                "garbage in {}",
                dst.display()
            );
        }
    }
}

#[test]
fn every_kind_of_entry_round_trips_and_reruns_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let (home, src) = (dir.path().join("home"), dir.path().join("src"));
    every_kind(&src);
    let xattr_ok = eventi::fsmeta::set_xattr(&src.join("text"), b"user.eventi", b"kept").is_ok();

    // An uninitialized home is initialized by the first backup.
    let first = backup(&home, &[&src], &["--tag", "first"]);
    assert!(home.join("key").exists());
    let target = dir.path().join("restored");
    let o = restore(&home, &format!("{first}:{}", src.display()), &target, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let back = target.join("src");
    assert_same_tree(&src, &back);
    if xattr_ok {
        let x = eventi::fsmeta::xattrs(&back.join("text")).unwrap();
        assert_eq!(x, vec![(b"user.eventi".to_vec(), b"kept".to_vec())]);
    }
    // The sparse file came back sparse.
    let sparse = fs::metadata(back.join("sparse")).unwrap();
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "{} bytes allocated",
        sparse.blocks() * 512
    );

    // The same tree again: the same tree reference, nothing new stored.
    let o = eventi(&home, &[os("backup"), os("--json"), src.as_os_str()]);
    assert!(o.status.success(), "{}", text(&o));
    let summary = summary(&o);
    assert_eq!(summary["event"], "summary");
    assert_eq!(
        summary["sent_blocks"], 0,
        "an unchanged tree sends nothing: {summary}"
    );
    let list = snapshots(&home);
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["tree"], list[1]["tree"]);
    assert_eq!(list[0]["parent"].as_str(), Some(first.as_str()));
    assert_eq!(list[1]["tags"][0], "first");
    assert_eq!(list[0]["own_key"], true);

    // Rerunning the restore skips what is there and changes nothing.
    let o = restore(&home, &format!("latest:{}", src.display()), &target, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("restored 0 files"), "{}", text(&o));
    assert_same_tree(&src, &back);
    // As after an interruption: what is missing is restored, nothing else.
    fs::remove_file(back.join("binary")).unwrap();
    fs::remove_dir_all(back.join("deep/level0/level1")).unwrap();
    let o = restore(&home, &format!("latest:{}", src.display()), &target, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("restored 2 files"), "{}", text(&o));
    assert_same_tree(&src, &back);

    // A file that differs is not overwritten without --overwrite.
    fs::write(back.join("text"), b"local edit").unwrap();
    let o = restore(&home, &format!("latest:{}", src.display()), &target, &[]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("text: not restored: exists and differs"),
        "{}",
        text(&o)
    );
    assert_eq!(fs::read(back.join("text")).unwrap(), b"local edit");
    let o = restore(
        &home,
        &format!("latest:{}", src.display()),
        &target,
        &["--overwrite"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_same_tree(&src, &back);

    // ls and cat see the same things.
    let o = eventi(&home, &[os("ls"), os(&format!("latest:{}", src.display()))]);
    assert!(o.status.success(), "{}", text(&o));
    let listing = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(listing.contains("link -> text"), "{listing}");
    assert!(
        listing.contains(&format!("hard-b => {}", src.join("hard-a").display())),
        "{listing}"
    );
    let o = eventi(
        &home,
        &[
            os("cat"),
            os(&format!("{}:{}", &first[..8], src.join("binary").display())),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let binary = fs::read(src.join("binary")).unwrap();
    assert!(o.stdout == binary);
    // A range of it, and a range past its end.
    let spec = format!("latest:{}", src.join("binary").display());
    let o = eventi(
        &home,
        &[
            os("cat"),
            os("--offset"),
            os("1000"),
            os("--length"),
            os("50"),
            os(&spec),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(o.stdout == binary[1000..1050]);
    let past = (binary.len() + 10).to_string();
    let o = eventi(&home, &[os("cat"), os("--offset"), os(&past), os(&spec)]);
    assert!(o.status.success() && o.stdout.is_empty(), "{}", text(&o));
}

/// One restore thread is enough: the walk waits for batch tickets that
/// only the workers give back, so it must not take the only worker.
#[test]
fn a_restore_with_one_thread_finishes() {
    let (dir, home, src) = fresh();
    // 400 files: more batches (64 files each) than tickets (4 per thread).
    for i in 0..400 {
        fs::write(src.join(format!("f{i:03}")), format!("file {i}")).unwrap();
    }
    let score = backup(&home, &[&src], &[]);
    let target = dir.path().join("restored");
    let mut child = eventi_tests::eventi_command(
        &home,
        &[("EVENTI_PASSPHRASE", PASS)],
        [
            "restore",
            "--threads",
            "1",
            &format!("{score}:{}", src.display()),
            target.to_str().unwrap(),
        ],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("a one-thread restore of 400 files hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success());
    assert_same_tree(&src, &target.join("src"));
}

#[test]
fn restore_verify_catches_a_file_with_the_right_size_and_mtime_but_other_content() {
    let (dir, home, src) = fresh();
    // 5 MiB of noise is about 95 raw chunks (an incompressible extent is
    // cut into chunks of ~50 KiB): the damage below sits in the second
    // batch of 64.
    fs::write(src.join("big"), pattern(8, 5 << 20)).unwrap();
    fs::write(src.join("small"), b"a few bytes").unwrap();
    fs::write(src.join("empty"), b"").unwrap();
    let score = backup(&home, &[&src], &[]);
    let spec = format!("{score}:{}", src.display());
    let target = dir.path().join("restored");
    let back = target.join("src");
    let o = restore(&home, &spec, &target, &[]);
    assert!(o.status.success(), "{}", text(&o));

    // What a power loss or a stray write can leave: the right size and
    // mtime, other bytes.
    let keep_mtime = |path: &Path, damage: &dyn Fn(&mut Vec<u8>)| {
        let m = fs::metadata(path).unwrap();
        let mut bytes = fs::read(path).unwrap();
        damage(&mut bytes);
        fs::write(path, &bytes).unwrap();
        set_mtime(path, m.mtime(), m.mtime_nsec());
    };
    keep_mtime(&back.join("big"), &|b| b[4_700_000] ^= 1);
    keep_mtime(&back.join("small"), &|b| b.fill(0));

    // Size and mtime alone take them for restored.
    let o = restore(&home, &spec, &target, &["--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(summary(&o)["files"], 0, "{}", text(&o));

    // --verify reads them, finds both, and overwrites neither unasked.
    let o = restore(&home, &spec, &target, &["--verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    for name in ["big", "small"] {
        let named = format!(
            "{}: not restored: exists with the snapshot's size and mtime but other content",
            back.join(name).display()
        );
        assert!(text(&o).contains(&named), "{}", text(&o));
    }
    assert_eq!(fs::read(back.join("small")).unwrap(), vec![0u8; 11]);

    // With --overwrite they are rewritten; the empty file was compared and
    // kept.
    let o = restore(
        &home,
        &spec,
        &target,
        &["--verify", "--overwrite", "--json"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let summary = summary(&o);
    assert_eq!(summary["files"], 2, "{summary}");
    assert_eq!(summary["verified"], 1, "{summary}");
    assert_same_tree(&src, &back);
}

#[test]
fn a_file_changed_too_recently_to_trust_its_stat_is_read_again_next_time() {
    let (_dir, home, src) = fresh();
    fs::write(src.join("settled"), b"written a while ago").unwrap();
    // eventi caches a file only once its last change (mtime or ctime) is
    // 2 s older than the end of its reading: timestamps advance in ticks,
    // and a write in the same tick could hide behind the cached stat. A
    // file stamped in the future (a skewed clock, an odd archive) is
    // never that old, so it is read every time.
    std::thread::sleep(std::time::Duration::from_millis(2200));
    fs::write(src.join("future"), b"later").unwrap();
    let in_an_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 3600;
    set_mtime(&src.join("future"), in_an_hour, 0);
    let run = || {
        let o = eventi(&home, &[os("backup"), os("--json"), src.as_os_str()]);
        assert!(o.status.success(), "{}", text(&o));
        summary(&o)
    };
    let first = run();
    assert_eq!(first["read_files"], 2, "{first}");
    for _ in 0..2 {
        let again = run();
        assert_eq!(again["read_files"], 1, "only the future file: {again}");
        assert_eq!(again["read_bytes"], 5, "{again}");
        assert_eq!(again["sent_blocks"], 0, "nothing new is sent: {again}");
    }
}

#[test]
fn without_eventi_home_files_go_to_the_xdg_directories_and_stay_out_of_backups() {
    let dir = tempfile::tempdir().unwrap();
    let user = dir.path().join("user");
    fs::create_dir_all(user.join("documents")).unwrap();
    fs::write(user.join("documents/letter"), b"dear ada").unwrap();
    // XDG_CACHE_HOME is set; config and data fall back to HOME's defaults.
    let cache = dir.path().join("xdg-cache");
    let run = |args: &[&OsStr]| {
        let o = Command::new(binary("eventi"))
            .env_remove("EVENTI_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env("HOME", &user)
            .env("XDG_CACHE_HOME", &cache)
            .env("EVENTI_PASSPHRASE", PASS)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    // Backing up all of HOME: eventi's own directories are in it.
    let score = run(&[os("backup"), user.as_os_str()]);
    let score = score.lines().last().unwrap();
    let (config, data) = (
        user.join(".config/eventi"),
        user.join(".local/share/eventi"),
    );
    assert!(config.join("key").is_file() && config.join("config.toml").is_file());
    assert!(data.join("store").is_dir() && data.join("heads/local").is_file());
    assert!(cache.join("eventi/local").is_dir());
    let tag = fs::read_to_string(cache.join("eventi/CACHEDIR.TAG")).unwrap();
    assert!(tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"));
    for d in [&config, &data, &cache.join("eventi")] {
        let mode = fs::metadata(d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
    let listing = run(&[
        os("ls"),
        os("-r"),
        os(&format!("{score}:{}", user.display())),
    ]);
    let has = |p: &Path| listing.lines().any(|l| l.ends_with(&*p.to_string_lossy()));
    assert!(has(&user.join("documents/letter")), "{listing}");
    assert!(has(&user.join(".local/share")), "{listing}");
    assert!(!has(&config) && !has(&data), "{listing}");
}

#[test]
fn json_output_is_events_then_a_summary_and_piped_output_has_no_bar() {
    let (_dir, home, src) = fresh();
    fs::write(src.join("f"), pattern(4, 300_000)).unwrap();
    let o = eventi(&home, &[os("backup"), os("--json"), src.as_os_str()]);
    assert!(o.status.success(), "{}", text(&o));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is one JSON object"))
        .collect();
    let (last, before) = events.split_last().unwrap();
    assert_eq!(last["event"], "summary");
    assert_eq!(last["snapshot"].as_str().unwrap().len(), 40);
    assert!(
        before
            .iter()
            .all(|e| e["event"] == "progress" || e["event"] == "checkpoint"),
        "{before:?}"
    );
    let progress: Vec<_> = before.iter().filter(|e| e["event"] == "progress").collect();
    assert!(!progress.is_empty(), "progress events come first");
    // The last checkpoint (the final sync) covers everything sent.
    let checkpoint = before
        .iter()
        .rfind(|e| e["event"] == "checkpoint")
        .expect("a checkpoint event");
    assert_eq!(checkpoint["durable_bytes"], last["sent_bytes"]);
    assert_eq!(checkpoint["durable_blocks"], last["sent_blocks"]);
    let end = progress.last().unwrap();
    assert_eq!(
        (end["files_done"].as_u64(), end["bytes_done"].as_u64()),
        (Some(1), Some(300_000))
    );

    // Without --json and not on a terminal: the summary on stderr, the
    // score on stdout, and no progress bar.
    let o = eventi(&home, &[os("backup"), src.as_os_str()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        !err.contains("ETA") && !err.contains('\r') && !err.contains("\x1b["),
        "{err}"
    );
}

#[test]
fn incremental_backup_stores_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let (home, src) = (dir.path().join("home"), dir.path().join("src"));
    fs::create_dir_all(src.join("docs")).unwrap();
    fs::write(src.join("big"), pattern(2, 20 << 20)).unwrap();
    for i in 0..200 {
        fs::write(src.join("docs").join(format!("doc{i}")), pattern(i, 3000)).unwrap();
    }
    fs::write(src.join("gone"), b"deleted later").unwrap();
    let first = backup(&home, &[&src], &[]);

    // Change one byte in the middle of the big file, append to one small
    // file, delete one, add one.
    let mut big = fs::read(src.join("big")).unwrap();
    big[10 << 20] ^= 0xff;
    fs::write(src.join("big"), &big).unwrap();
    fs::write(
        src.join("docs/doc7"),
        [pattern(7, 3000), b"more".to_vec()].concat(),
    )
    .unwrap();
    fs::remove_file(src.join("gone")).unwrap();
    fs::write(src.join("new"), b"fresh").unwrap();
    let o = eventi(&home, &[os("backup"), os("--json"), src.as_os_str()]);
    assert!(o.status.success(), "{}", text(&o));
    let summary = summary(&o);
    let sent = summary["sent_bytes"].as_u64().unwrap();
    // One or two changed chunks of the big file (≤ 2 x 56 KiB), its root,
    // two small files and three directory blocks; nothing else. (The big
    // file is read again, but its other chunks are known and not sent.)
    assert!(
        sent < 200 << 10,
        "sent {sent} bytes for a few small edits: {summary}"
    );
    assert!(summary["sent_blocks"].as_u64().unwrap() <= 10, "{summary}");

    let o = eventi(&home, &[os("diff"), os(&first), os("latest")]);
    assert!(o.status.success(), "{}", text(&o));
    let mut lines: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    let s = src.display();
    assert_eq!(
        lines,
        vec![
            format!("+ {s}/new"),
            format!("- {s}/gone"),
            format!("M {s}/big"),
            format!("M {s}/docs/doc7"),
        ],
        "{}",
        text(&o)
    );

    // The new snapshot restores to exactly the edited tree.
    let target = dir.path().join("restored");
    fs::create_dir(&target).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o700)).unwrap();
    let o = restore(&home, "latest", &target, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    // The whole snapshot went into TARGET, which keeps its own mode.
    assert_eq!(fs::metadata(&target).unwrap().mode() & 0o777, 0o700);
}

#[test]
fn bad_passphrase_missing_key_and_unknown_snapshots_are_clear_errors() {
    let (dir, home, src) = fresh();
    fs::write(src.join("f"), b"data").unwrap();
    let score = backup(&home, &[&src], &[]);

    let o = eventi_env(&home, &[("EVENTI_PASSPHRASE", "wrong")], &[os("snapshots")]);
    assert!(!o.status.success());
    assert!(text(&o).contains("wrong passphrase"), "{}", text(&o));
    let o = eventi_env(
        &home,
        &[("EVENTI_PASSPHRASE", "wrong")],
        &[os("backup"), src.as_os_str()],
    );
    assert!(!o.status.success());
    assert_eq!(snapshots(&home).len(), 1, "a refused backup adds nothing");

    let nowhere = dir.path().join("no-home");
    let o = eventi(
        &nowhere,
        &[os("restore"), os(&score), dir.path().join("t").as_os_str()],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("no key file"), "{}", text(&o));
    assert!(!dir.path().join("t").exists(), "nothing restored");

    let o = eventi(
        &home,
        &[os("ls"), os("0000000000000000000000000000000000000001")],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("missing"), "{}", text(&o));
    let o = eventi(&home, &[os("ls"), os("zz")]);
    assert!(text(&o).contains("not a snapshot"), "{}", text(&o));
    let o = eventi(
        &home,
        &[
            os("cat"),
            os(&format!("latest:{}", src.join("nope").display())),
        ],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("nope is not in the snapshot"),
        "{}",
        text(&o)
    );
}

#[test]
fn an_ambiguous_snapshot_prefix_is_refused() {
    let (_dir, home, src) = fresh();
    fs::write(src.join("f"), b"x").unwrap();
    // Seventeen roots: two of them must share their first hex digit.
    let roots: Vec<String> = (0..17).map(|_| backup(&home, &[&src], &[])).collect();
    let digit = (0..16)
        .map(|d| format!("{d:x}"))
        .find(|d| roots.iter().filter(|r| r.starts_with(d.as_str())).count() > 1)
        .unwrap();
    let o = eventi(&home, &[os("ls"), os(&digit)]);
    assert!(!o.status.success());
    assert!(text(&o).contains("is ambiguous"), "{}", text(&o));
    // The whole score always works.
    let o = eventi(&home, &[os("ls"), os(&roots[0])]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_corrupt_store_names_the_paths_it_could_not_restore_and_writes_no_garbage() {
    let (dir, home, src) = fresh();
    for i in 0..40u64 {
        fs::write(src.join(format!("file{i:02}")), pattern(100 + i, 200_000)).unwrap();
    }
    backup(&home, &[&src], &[]);
    // Flip bytes throughout the data log (not its first blocks or tail).
    let log_dir = home.join("store/log");
    let segment = fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let mut bytes = fs::read(&segment).unwrap();
    let len = bytes.len();
    for k in 1..8 {
        bytes[len * k / 10] ^= 0x55;
    }
    fs::write(&segment, bytes).unwrap();

    let target = dir.path().join("restored");
    let o = restore(&home, &format!("latest:{}", src.display()), &target, &[]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("not restored"), "{err}");
    assert!(
        err.contains(&target.join("src").display().to_string()),
        "names the path: {err}"
    );
    assert_nothing_wrong(&src, &target.join("src"));
}

#[test]
fn a_missing_block_names_the_path_and_the_rest_is_restored() {
    let (dir, home, src) = fresh();
    for i in 0..20u64 {
        fs::write(src.join(format!("file{i:02}")), pattern(300 + i, 5000)).unwrap();
    }
    backup(&home, &[&src], &[]);
    // The block of file07 (one chunk), computed as the client does, is
    // removed from the embedded store's index: the store no longer has it.
    let secrets = secrets(&home);
    let content = fs::read(src.join("file07")).unwrap();
    let (_, r) =
        eventi::format::block::seal(&secrets.convergence, &eventi::format::chunk::pack(&content));
    let mut key = r.score.as_bytes().to_vec();
    key.push(eventi_shared::BlockType::DATA.to_wire());
    let index = rocksdb::DB::open_default(home.join("store/index")).unwrap();
    assert!(index.get(&key).unwrap().is_some(), "the block was stored");
    index.delete(&key).unwrap();
    drop(index);

    let target = dir.path().join("restored");
    let o = restore(&home, &format!("latest:{}", src.display()), &target, &[]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    let named = format!(
        "{}: not restored: block {} ",
        target.join("src/file07").display(),
        r.score
    );
    assert!(err.contains(&named) && err.contains("is missing"), "{err}");
    assert!(!target.join("src/file07").exists(), "no partial file");
    assert_eq!(
        fs::read_dir(target.join("src")).unwrap().count(),
        19,
        "the rest is restored"
    );
    assert_nothing_wrong(&src, &target.join("src"));
}

#[test]
fn an_unreadable_file_is_reported_and_the_backup_goes_on() {
    // Root reads everything: as root, the backup runs as the user nobody,
    // who must be able to reach the temp dir, the binary and the home. So
    // the temp dir is made in /tmp, not in a $TMPDIR that may sit under
    // root's own home, and the binary is copied into it (the build
    // directory may be under /root too, as in CI).
    let as_root = is_root();
    let dir = tempdir_for_nobody();
    let (home, src) = (dir.path().join("home"), dir.path().join("src"));
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("readable"), b"fine").unwrap();
    fs::write(src.join("unreadable"), b"locked").unwrap();
    fs::set_permissions(src.join("unreadable"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::create_dir_all(&home).unwrap();
    let program = binary_copy_in(dir.path(), "eventi");
    let mut c = Command::new(&program);
    c.env("EVENTI_HOME", &home)
        .env("EVENTI_PASSPHRASE", PASS)
        .arg("backup")
        .arg(&src)
        .stdin(std::process::Stdio::null());
    if as_root {
        use std::os::unix::process::CommandExt;
        for p in [dir.path(), &home, &src] {
            std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
        }
        c.uid(NOBODY).gid(NOBODY);
    }
    let o = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert_eq!(
        o.status.code(),
        Some(3),
        "incomplete snapshot: {}",
        text(&o)
    );
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("unreadable: not backed up"), "{err}");
    assert!(err.contains("1 entries could not be read"), "{err}");
    let score = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    let o = eventi(
        &home,
        &[os("ls"), os(&format!("{score}:{}", src.display()))],
    );
    let listing = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        listing.contains("readable") && !listing.contains("unreadable"),
        "{listing}"
    );
}

#[test]
fn excludes_and_cachedir_tags_leave_things_out() {
    let dir = tempfile::tempdir().unwrap();
    // eventi's own home inside the tree is left out without being told.
    let src = dir.path().join("src");
    let home = src.join("eventi-home");
    fs::create_dir_all(src.join("build/deep")).unwrap();
    fs::create_dir_all(src.join("cache")).unwrap();
    fs::write(src.join("keep.c"), b"int main;").unwrap();
    fs::write(src.join("drop.o"), b"obj").unwrap();
    fs::write(src.join("build/deep/x"), b"x").unwrap();
    fs::write(src.join("cache/blob"), b"cached").unwrap();
    fs::write(
        src.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n",
    )
    .unwrap();
    let list = dir.path().join("excludes");
    fs::write(&list, format!("# build output\n{}/build\n", src.display())).unwrap();
    let score = backup(
        &home,
        &[&src],
        &["--exclude", "*.o", "--exclude-file", list.to_str().unwrap()],
    );
    let o = eventi(
        &home,
        &[
            os("ls"),
            os("-r"),
            os(&format!("{score}:{}", src.display())),
        ],
    );
    let listing = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(listing.contains("keep.c"), "{listing}");
    assert!(listing.contains("CACHEDIR.TAG"), "{listing}");
    for gone in ["drop.o", "build", "blob", "eventi-home"] {
        assert!(
            !listing.contains(gone),
            "{gone} should be excluded: {listing}"
        );
    }
}

#[test]
fn backup_and_restore_through_a_real_eventi_server() {
    let dir = tempfile::tempdir().unwrap();
    let (home, src) = (dir.path().join("home"), dir.path().join("src"));
    every_kind(&src);
    fs::write(src.join("big"), pattern(3, 8 << 20)).unwrap(); // Keep it quick.
    let data = dir.path().join("data");
    // The server starts first, so init can be pointed at it.
    keys_cli(&data, &["list"]);
    let server = Server::start_strict(&data, &[]);
    let line = init_with(&home, &[&server]);
    // Not yet authorized: the backup fails with the server's reason.
    let o = eventi(&home, &[os("backup"), src.as_os_str()]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("not authorized") || text(&o).contains("needs an authorized key"),
        "{}",
        text(&o)
    );
    keys_cli(&data, &["add", "me", &line, "--quota", "1GiB"]);
    let score = backup(&home, &[&src], &[]);
    assert_restores(&home, &score, &src, &dir.path().join("restored"));
}

#[test]
fn backup_and_restore_through_plan9port_venti() {
    let plan9 = need_plan9!();
    let dir = tempfile::tempdir().unwrap();
    let (home, src) = (dir.path().join("home"), dir.path().join("src"));
    every_kind(&src);
    fs::write(src.join("big"), pattern(5, 8 << 20)).unwrap();
    let venti = Plan9Venti::start(&plan9, &dir.path().join("venti"));
    // Plain venti has no write keys: the client writes anonymously.
    init_at(&home, &[venti.addr]);
    let score = backup(&home, &[&src], &[]);

    // Without the cache every block goes over the wire again; plain venti
    // takes the duplicates and the tree reference is the same.
    let o = eventi(
        &home,
        &[
            os("backup"),
            os("--json"),
            os("--no-cache"),
            src.as_os_str(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let summary = summary(&o);
    assert!(summary["sent_blocks"].as_u64().unwrap() > 0, "{summary}");
    let list = snapshots(&home);
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["tree"], list[1]["tree"]);

    assert_restores(&home, &score, &src, &dir.path().join("restored"));
}

#[test]
fn an_interrupted_backup_does_not_resend_what_it_stored() {
    let (dir, home, src) = fresh();
    for i in 0..30u64 {
        fs::write(src.join(format!("part{i:02}")), pattern(500 + i, 1 << 20)).unwrap();
    }
    let data = dir.path().join("data");
    keys_cli(&data, &["list"]);
    let server = Server::start_strict(&data, &[]);
    let line = init_with(&home, &[&server]);
    // A quota of about a third of the data interrupts the first backup.
    keys_cli(&data, &["add", "me", &line, "--quota", "10MiB"]);
    let args = [
        os("backup"),
        os("--json"),
        os("--checkpoint"),
        os("1MiB"),
        src.as_os_str(),
    ];
    let o = eventi(&home, &args);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("quota exceeded"), "{}", text(&o));
    assert!(
        snapshots(&home).is_empty(),
        "no snapshot from a failed backup"
    );

    // The rerun, with room, sends only what did not make it.
    keys_cli(&data, &["set-quota", "me", "1GiB"]);
    let o = eventi(&home, &args);
    assert!(o.status.success(), "{}", text(&o));
    let summary = summary(&o);
    let sent = summary["sent_bytes"].as_u64().unwrap();
    let known = summary["known_blocks"].as_u64().unwrap();
    assert!(
        known >= 200,
        "blocks stored before the interruption are known: {summary}"
    );
    assert!(
        sent <= 23 << 20,
        "resent too much ({sent} bytes): {summary}"
    );
    assert_restores(&home, "latest", &src, &dir.path().join("restored"));
}

#[test]
fn two_servers_get_every_block_and_either_one_restores() {
    let dir = tempfile::tempdir().unwrap();
    let (home, src) = (dir.path().join("home"), dir.path().join("src"));
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("big"), pattern(9, 3 << 20)).unwrap();
    fs::write(src.join("sub/small"), b"small").unwrap();
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    keys_cli(&data_a, &["list"]);
    keys_cli(&data_b, &["list"]);
    let (a, b) = (
        Server::start_strict(&data_a, &[]),
        Server::start_strict(&data_b, &[]),
    );
    let addr_a = a.addr.to_string();
    let line = init_with(&home, &[&a, &b]);
    keys_cli(&data_a, &["add", "me", &line, "--quota", "1GiB"]);
    keys_cli(&data_b, &["add", "me", &line, "--quota", "1GiB"]);
    let score = backup(&home, &[&src], &[]);

    // With one server gone, the other has every block; a backup, though,
    // refuses to go to only some of the servers.
    a.terminate();
    let target = dir.path().join("restored");
    let o = restore(&home, &format!("{score}:{}", src.display()), &target, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("skipping {addr_a}")),
        "{}",
        text(&o)
    );
    assert_same_tree(&src, &target.join("src"));
    let o = eventi(&home, &[os("backup"), src.as_os_str()]);
    assert!(!o.status.success());
    assert!(text(&o).contains(&addr_a), "names the server: {}", text(&o));
    drop(b);
}

#[test]
fn a_root_signed_by_another_key_is_listed_as_such() {
    let (_dir, home, src) = fresh();
    fs::write(src.join("f"), b"data").unwrap();
    let first = backup(&home, &[&src], &[]);
    // Another machine holding only the snapshot public key adds a root
    // (as a write-only machine will), signed with its own write key.
    let secrets = secrets(&home);
    let owner = x25519_dalek::PublicKey::from(secrets.snapshot_public);
    let other = eventi_tests::new_key();
    let store = eventi::store::local::LocalStore::open(&home.join("store")).unwrap();
    let snap = eventi::format::snapshot::Snapshot {
        tree: eventi::format::block::seal(&[0; 32], b"x").1,
        parent: Some(first.parse().unwrap()),
        time_ns: 0,
        host: "elsewhere".into(),
        paths: vec![b"/x".to_vec()],
        tags: vec![],
        counts: Default::default(),
    };
    let block = snap.seal(&owner, &other);
    let root =
        eventi::store::put_wait(&store, eventi_shared::BlockType::DATA, block.into()).unwrap();
    store.close().unwrap();
    drop(store);
    fs::write(home.join("heads/local"), format!("{root}\n")).unwrap();
    let list = snapshots(&home);
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["own_key"], false);
    assert_eq!(list[0]["signer"], eventi_tests::public_line(&other));
    assert_eq!(list[1]["own_key"], true);
    let o = eventi(&home, &[os("snapshots")]);
    assert!(
        text(&o).contains("(signed by eventi-ed25519 "),
        "{}",
        text(&o)
    );
}

/// With no path given, a backup takes `paths`, `exclude` and `tags` from
/// config.toml (as a timer runs it); `--dry-run` lists what it would read
/// and stores nothing, with no key needed.
#[test]
fn paths_excludes_and_tags_come_from_the_config_and_dry_run_stores_nothing() {
    let (dir, home, src) = fresh();
    let other = dir.path().join("other");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::create_dir_all(&other).unwrap();
    fs::write(src.join("keep.txt"), "kept").unwrap();
    fs::write(src.join("skip.tmp"), "left out").unwrap();
    fs::write(src.join("sub/also.txt"), "also kept").unwrap();
    fs::write(other.join("o.txt"), "the second path").unwrap();

    // No path and no config: a clear error, nothing created.
    let o = eventi(&home, &[os("backup")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("nothing to back up"), "{}", text(&o));
    assert!(!home.join("key").exists());

    fs::create_dir_all(&home).unwrap();
    let config = format!(
        "paths = [{:?}, {:?}]\nexclude = [\"*.tmp\"]\ntags = [\"nightly\"]\n",
        src.display().to_string(),
        other.display().to_string()
    );
    fs::write(home.join("config.toml"), &config).unwrap();

    // The dry run: no key file yet, and none made.
    let o = eventi_env(&home, &[], &[os("backup"), os("--dry-run")]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!home.join("key").exists(), "a dry run needs no key");
    let listed: Vec<String> = String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let want = [
        format!("- d 0 {}", src.display()),
        format!("+ f 4 {}", src.join("keep.txt").display()),
        format!("- d 0 {}", src.join("sub").display()),
        format!("+ f 9 {}", src.join("sub/also.txt").display()),
        format!("- d 0 {}", other.display()),
        format!("+ f 15 {}", other.join("o.txt").display()),
    ];
    assert_eq!(listed, want);
    assert!(
        text(&o).contains("would read 3 of 3 files (28 B of 28 B; 0 unchanged"),
        "{}",
        text(&o)
    );

    // The backup itself (the first: it makes the key, and keeps the
    // config written before it): the same entries, the config's tag and
    // the command line's.
    let score = backup(&home, &[], &["--tag", "by-hand"]);
    assert!(fs::read_to_string(home.join("config.toml"))
        .unwrap()
        .contains("nightly"));
    let target = dir.path().join("restored");
    let o = restore(&home, &format!("{score}:{}", src.display()), &target, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(target.join("src/keep.txt").exists());
    assert!(target.join("src/sub/also.txt").exists());
    assert!(
        !target.join("src/skip.tmp").exists(),
        "excluded by the config"
    );
    let o = restore(&home, &format!("{score}:{}", other.display()), &target, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(target.join("other/o.txt").exists());
    let list = snapshots(&home);
    let tags = list[0]["tags"].as_array().unwrap();
    assert!(
        tags.contains(&"nightly".into()) && tags.contains(&"by-hand".into()),
        "{tags:?}"
    );

    // After the backup, the dry run reads the cache (read-only): what the
    // next backup would take unchanged is `=`, a changed file `+`. The
    // files must be settled (2 s) to be cached at all.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    backup(&home, &[], &[]);
    fs::write(src.join("keep.txt"), "changed!").unwrap();
    let o = eventi_env(&home, &[], &[os("backup"), os("--dry-run")]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(
        out.contains(&format!("+ f 8 {}", src.join("keep.txt").display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("= f 9 {}", src.join("sub/also.txt").display())),
        "{out}"
    );
    assert!(
        text(&o).contains("would read 1 of 3 files (8 B of 32 B; 2 unchanged"),
        "{}",
        text(&o)
    );
    // With --no-cache, everything would be read.
    let o = eventi_env(
        &home,
        &[],
        &[os("backup"), os("--dry-run"), os("--no-cache")],
    );
    assert!(text(&o).contains("would read 3 of 3 files"), "{}", text(&o));

    // A relative path in the config is refused, naming it.
    fs::write(home.join("config.toml"), "paths = [\"relative/dir\"]\n").unwrap();
    let o = eventi(&home, &[os("backup"), os("--dry-run")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("relative/dir"), "{}", text(&o));
}
