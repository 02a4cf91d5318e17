//! Re-backups of an unchanged tree take unchanged directories whole from
//! the cache (their signatures match), and every kind of change below one
//! still reaches the snapshot: with the real binary on real files.
//!
//! A directory is only signed when everything in it changed more than two
//! seconds before the backup began (a later change in the same timestamp
//! tick would not show), so these tests wait that long after each change.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use eventi_tests::{output_text, pattern, run_eventi};

const PASS: &str = "correct horse";
/// Longer than the client's settling time.
const SETTLE: Duration = Duration::from_millis(2300);

fn eventi(home: &Path, args: &[&str]) -> Output {
    let o = run_eventi(home, &[("EVENTI_PASSPHRASE", PASS)], args);
    assert!(o.status.success(), "eventi {args:?}: {}", output_text(&o));
    o
}

/// `eventi backup --json`'s summary.
fn backup(home: &Path, src: &Path) -> serde_json::Value {
    let o = eventi(home, &["backup", "--json", src.to_str().unwrap()]);
    serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap()
}

/// Restores the latest snapshot of `src` into `out` and compares what
/// comes back (as `out/src`) with `src`: contents, names on both sides,
/// and modes. Returns where it came back.
fn assert_restores(home: &Path, src: &Path, out: &Path) -> PathBuf {
    let _ = fs::remove_dir_all(out);
    eventi(
        home,
        &[
            "restore",
            &format!("latest:{}", src.display()),
            out.to_str().unwrap(),
        ],
    );
    let target = &out.join(src.file_name().unwrap());
    let o = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .args([src, target])
        .output()
        .unwrap();
    assert!(o.status.success(), "diff -r: {}", output_text(&o));
    for (a, b) in eventi_tests::walk_files(src)
        .iter()
        .map(|p| (p.clone(), target.join(p.strip_prefix(src).unwrap())))
    {
        let (ma, mb) = (
            fs::symlink_metadata(&a).unwrap(),
            fs::symlink_metadata(&b).unwrap(),
        );
        assert_eq!(ma.permissions().mode(), mb.permissions().mode(), "{b:?}");
    }
    target.clone()
}

/// A temp dir and, in it, the paths of a home, a source tree and a
/// restore target (none made yet).
fn fresh() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = |name| dir.path().join(name);
    let (home, src, out) = (p("home"), p("src"), p("out"));
    (dir, home, src, out)
}

fn n(summary: &serde_json::Value, field: &str) -> u64 {
    summary[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {summary}"))
}

#[test]
fn unchanged_directories_are_taken_whole_and_changes_below_them_are_not_missed() {
    let (_dir, home, src, out) = fresh();
    for d in ["a/b/c", "d/e", "f"] {
        fs::create_dir_all(src.join(d)).unwrap();
    }
    fs::write(src.join("a/b/c/deep.bin"), pattern(1, 200_000)).unwrap();
    fs::write(src.join("a/top.txt"), b"top\n").unwrap();
    for i in 0..20 {
        fs::write(src.join(format!("d/e/{i}.txt")), format!("file {i}\n")).unwrap();
    }
    fs::write(src.join("f/one"), b"one\n").unwrap();
    std::os::unix::fs::symlink("../a/top.txt", src.join("f/link")).unwrap();
    std::thread::sleep(SETTLE);

    let first = backup(&home, &src);
    assert_eq!(n(&first, "reused_dirs"), 0, "nothing recorded yet");
    let second = backup(&home, &src);
    assert_eq!(second["tree"], first["tree"], "nothing changed");
    assert_eq!(n(&second, "reused_dirs"), 1, "the whole tree at once");
    assert_eq!(n(&second, "read_files"), 0);
    assert_eq!(n(&second, "sent_blocks"), 0);
    for field in ["files", "dirs", "symlinks", "bytes"] {
        assert_eq!(n(&second, field), n(&first, field), "{field}");
    }

    // A file two levels down rewritten with the same size and its old
    // mtime put back: only its status-change time tells.
    let deep = src.join("a/b/c/deep.bin");
    let mtime = fs::metadata(&deep).unwrap().modified().unwrap();
    fs::write(&deep, pattern(2, 200_000)).unwrap();
    fs::File::options()
        .write(true)
        .open(&deep)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::thread::sleep(SETTLE);
    let third = backup(&home, &src);
    assert_ne!(third["tree"], second["tree"]);
    assert_eq!(
        n(&third, "read_files"),
        1,
        "only the rewritten file is read"
    );
    assert_eq!(
        n(&third, "reused_dirs"),
        2,
        "d and f are taken whole; a, a/b and a/b/c are walked"
    );
    assert_restores(&home, &src, &out);

    // An entry added deep down, one removed, a mode changed on a
    // directory, and a symlink replaced.
    fs::write(src.join("d/e/new.txt"), b"new\n").unwrap();
    fs::remove_file(src.join("a/top.txt")).unwrap();
    fs::set_permissions(src.join("a/b"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::remove_file(src.join("f/link")).unwrap();
    std::os::unix::fs::symlink("one", src.join("f/link")).unwrap();
    std::thread::sleep(SETTLE);
    let fourth = backup(&home, &src);
    assert_eq!(n(&fourth, "files"), n(&third, "files"), "one in, one out");
    assert_eq!(
        n(&fourth, "reused_dirs"),
        1,
        "only a/b's content (its own mode is in a's listing)"
    );
    let back = assert_restores(&home, &src, &out);
    assert_eq!(
        fs::read_link(back.join("f/link")).unwrap(),
        Path::new("one"),
        "the new target"
    );

    // Unchanged again: whole, and the same tree as the last backup.
    let fifth = backup(&home, &src);
    assert_eq!(fifth["tree"], fourth["tree"]);
    assert_eq!(n(&fifth, "reused_dirs"), 1);
}

#[test]
fn what_was_not_signed_is_walked_and_the_records_follow_the_tree() {
    let (_dir, home, src, out) = fresh();
    for d in ["linked", "elsewhere", "pair", "plain"] {
        fs::create_dir_all(src.join(d)).unwrap();
    }
    fs::write(src.join("linked/one"), b"shared\n").unwrap();
    fs::hard_link(src.join("linked/one"), src.join("elsewhere/two")).unwrap();
    fs::write(src.join("pair/a"), b"aliased\n").unwrap();
    fs::hard_link(src.join("pair/a"), src.join("pair/b")).unwrap();
    fs::write(src.join("plain/file"), b"plain\n").unwrap();
    std::thread::sleep(SETTLE);
    backup(&home, &src);
    // Directories with links to each other are never taken whole, nor any
    // above them; one whose file's links are all in it is, and so is the
    // plain one.
    let second = backup(&home, &src);
    assert_eq!(n(&second, "reused_dirs"), 2, "pair and plain");
    let back = assert_restores(&home, &src, &out);
    let ino = |p: &Path| fs::metadata(p).unwrap().ino();
    assert_eq!(ino(&back.join("pair/a")), ino(&back.join("pair/b")));
    assert_eq!(
        ino(&back.join("linked/one")),
        ino(&back.join("elsewhere/two"))
    );

    // Changed just before the backup: not signed, so walked (and found
    // changed) even though its signature would be taken too early.
    fs::write(src.join("plain/file"), b"PLAIN\n").unwrap();
    let third = backup(&home, &src);
    assert_eq!(n(&third, "reused_dirs"), 1, "pair");
    assert_eq!(n(&third, "read_files"), 1);
    assert_restores(&home, &src, &out);

    // A directory removed and made again with other content: its old
    // record does not come back.
    fs::remove_dir_all(src.join("plain")).unwrap();
    backup(&home, &src);
    fs::create_dir_all(src.join("plain")).unwrap();
    fs::write(src.join("plain/other"), b"other\n").unwrap();
    std::thread::sleep(SETTLE);
    let fifth = backup(&home, &src);
    assert_eq!(n(&fifth, "reused_dirs"), 1, "pair; plain is new");
    let back = assert_restores(&home, &src, &out);
    assert!(!back.join("plain/file").exists());
}
