//! Capabilities and drop chains with the real binaries: a real
//! eventi-server on loopback (and plan9port's venti where `$PLAN9` names
//! one), an owner's home, and fetches by a process with an empty HOME.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use eventi_tests::{
    keys_cli, output_text, pattern, run_eventi, run_eventi_homeless, run_eventi_stdin, Server,
};

const PASS: &str = "dead drops";

fn eventi(home: &Path, args: &[&str]) -> Output {
    run_eventi(home, &[("EVENTI_PASSPHRASE", PASS)], args)
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", output_text(&o));
    o
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A process with nothing: a fresh, empty HOME (checked empty afterwards
/// by [`Homeless::assert_untouched`]).
struct Homeless {
    home: PathBuf,
}

impl Homeless {
    fn new(dir: &Path) -> Homeless {
        let home = dir.join("empty-home");
        fs::create_dir_all(&home).unwrap();
        Homeless { home }
    }

    fn run(&self, args: &[&str]) -> Output {
        run_eventi_homeless(&self.home, args, b"")
    }

    fn run_with(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_eventi_homeless(&self.home, args, stdin)
    }

    fn assert_untouched(&self) {
        let left: Vec<_> = fs::read_dir(&self.home).unwrap().collect();
        assert!(left.is_empty(), "eventi wrote into HOME: {left:?}");
    }
}

/// An eventi-server and an owner's home backing up to it.
fn owner(dir: &Path) -> (Server, PathBuf) {
    let data = dir.join("data");
    keys_cli(&data, &["list"]);
    let server = Server::start_strict(&data, &[]);
    let home = dir.join("owner");
    let addr = server.addr.to_string();
    let line = stdout(&ok(eventi(
        &home,
        &["init", "--trust-on-first-use", "--server", &addr],
    )));
    keys_cli(&data, &["add", "owner", &line, "--quota", "10GiB"]);
    (server, home)
}

/// A tree with a part to share and a part beside it.
fn source(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    let shared = src.join("shared");
    fs::create_dir_all(shared.join("sub")).unwrap();
    fs::write(src.join("outside.txt"), b"not for you").unwrap();
    fs::write(shared.join("a.txt"), b"hello, friend\n").unwrap();
    fs::set_permissions(shared.join("a.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(shared.join("sub/big.bin"), pattern(13, 3 << 20)).unwrap();
    std::os::unix::fs::symlink("../a.txt", shared.join("sub/link")).unwrap();
    fs::hard_link(shared.join("a.txt"), shared.join("sub/hard.txt")).unwrap();
    fs::set_permissions(shared.join("sub"), fs::Permissions::from_mode(0o750)).unwrap();
    src
}

/// Every name under `dir`, relative, sorted.
fn names(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `got` holds what `want` holds: names, bytes, modes, mtimes, symlink
/// targets, and hard links as one inode.
fn assert_same_tree(want: &Path, got: &Path) {
    assert_eq!(names(want), names(got), "names differ");
    for rel in names(want) {
        let (a, b) = (want.join(&rel), got.join(&rel));
        let (ma, mb) = (
            fs::symlink_metadata(&a).unwrap(),
            fs::symlink_metadata(&b).unwrap(),
        );
        assert_eq!(ma.mode(), mb.mode(), "mode of {}", rel.display());
        if ma.file_type().is_symlink() {
            assert_eq!(fs::read_link(&a).unwrap(), fs::read_link(&b).unwrap());
            continue;
        }
        assert_eq!(ma.mtime(), mb.mtime(), "mtime of {}", rel.display());
        assert_eq!(
            ma.mtime_nsec(),
            mb.mtime_nsec(),
            "mtime of {}",
            rel.display()
        );
        if ma.is_file() {
            assert!(
                fs::read(&a).unwrap() == fs::read(&b).unwrap(),
                "{} differs",
                rel.display()
            );
            assert_eq!(ma.nlink(), mb.nlink(), "links of {}", rel.display());
        }
    }
}

/// The line with the character at `i` changed to another digit.
fn mistyped(line: &str, i: usize) -> String {
    let mut b = line.as_bytes().to_vec();
    b[i] = if b[i] == b'7' { b'8' } else { b'7' };
    String::from_utf8(b).unwrap()
}

#[test]
fn a_shared_subtree_reaches_an_empty_home_whole_and_nothing_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let (server, home) = owner(dir.path());
    let src = source(dir.path());
    ok(eventi(&home, &["backup", src.to_str().unwrap()]));
    let spec = format!("latest:{}", src.join("shared").display());
    let line = stdout(&ok(eventi(&home, &["share", &spec])));
    assert!(line.starts_with("ev1d"), "{line}");
    assert!(line.ends_with(&format!("@{}", server.addr)), "{line}");
    assert!(line.len() < 100, "a short line: {line}");

    let nobody = Homeless::new(dir.path());
    let target = dir.path().join("got");
    let o = ok(nobody.run(&["get", &line, target.to_str().unwrap()]));
    assert!(o.stdout.is_empty(), "{}", output_text(&o));
    // TARGET did not exist: it became the tree.
    assert_same_tree(&src.join("shared"), &target);
    let meta = fs::metadata(&target).unwrap();
    assert_eq!(
        meta.mode() & 0o7777,
        fs::metadata(src.join("shared")).unwrap().mode() & 0o7777
    );
    assert!(!target.join("outside.txt").exists());

    // ls and cat through the same line; nothing beside it can be named.
    let listing = stdout(&ok(nobody.run(&["ls", "-r", &line])));
    assert!(listing.contains("/sub/big.bin"), "{listing}");
    assert!(!listing.contains("outside"), "{listing}");
    let cat = ok(nobody.run(&["cat", &format!("{line}:/a.txt")]));
    assert_eq!(cat.stdout, b"hello, friend\n");
    let cat = ok(nobody.run(&["cat", &format!("{line}:/sub/hard.txt")]));
    assert_eq!(cat.stdout, b"hello, friend\n");
    let up = nobody.run(&["cat", &format!("{line}:/../outside.txt")]);
    assert!(!up.status.success());
    assert!(
        output_text(&up).contains("`..` is not allowed"),
        "{}",
        output_text(&up)
    );
    let range = ok(nobody.run(&[
        "cat",
        "--offset",
        "1MiB",
        "--length",
        "16",
        &format!("{line}:/sub/big.bin"),
    ]));
    assert_eq!(range.stdout, &pattern(13, 3 << 20)[1 << 20..(1 << 20) + 16]);

    // A file's capability goes to stdout, or from stdin and from a file.
    let spec = format!("latest:{}", src.join("shared/sub/big.bin").display());
    let file_line = stdout(&ok(eventi(&home, &["share", &spec])));
    assert!(file_line.starts_with("ev1f"), "{file_line}");
    let o = ok(nobody.run(&["get", &file_line]));
    assert!(o.stdout == pattern(13, 3 << 20), "the file on stdout");
    let o = ok(nobody.run_with(&["get", "-"], format!("{file_line}\n").as_bytes()));
    assert_eq!(o.stdout.len(), 3 << 20);
    let cap_file = dir.path().join("cap.txt");
    fs::write(&cap_file, format!("{file_line}\n")).unwrap();
    let out_file = dir.path().join("big.copy");
    ok(nobody.run(&[
        "get",
        &format!("@{}", cap_file.display()),
        out_file.to_str().unwrap(),
    ]));
    assert!(fs::read(&out_file).unwrap() == pattern(13, 3 << 20));
    let m = fs::metadata(&out_file).unwrap();
    assert_eq!(
        m.mtime(),
        fs::metadata(src.join("shared/sub/big.bin"))
            .unwrap()
            .mtime()
    );

    // One character changed anywhere: refused by the checksum, nothing written.
    for i in [5, 30, 60, 67] {
        let bad = mistyped(&line, i);
        let elsewhere = dir.path().join(format!("bad{i}"));
        let o = nobody.run(&["get", &bad, elsewhere.to_str().unwrap()]);
        assert!(!o.status.success(), "{bad} was taken");
        assert!(output_text(&o).contains("checksum"), "{}", output_text(&o));
        assert!(!elsewhere.exists());
    }
    let cut = nobody.run(&["get", &line[..50]]);
    assert!(!cut.status.success());
    assert!(
        output_text(&cut).contains("missing or doubled"),
        "{}",
        output_text(&cut)
    );
    nobody.assert_untouched();
}

/// `put` of a file and of stdin to the home's server, then `get` by a
/// process with nothing but the line.
fn put_then_get(dir: &Path, home: &Path) {
    let file = dir.join("note.txt");
    fs::write(&file, pattern(5, 200_000)).unwrap();
    let line = stdout(&ok(eventi(home, &["put", file.to_str().unwrap()])));
    assert!(line.starts_with("ev1f"), "{line}");
    let stdin_line = stdout(&ok(run_eventi_stdin(
        home,
        &[("EVENTI_PASSPHRASE", PASS)],
        ["put", "-"],
        b"a message on stdin",
    )));
    // Nothing touched the chain: no snapshot was made.
    let o = ok(eventi(home, &["snapshots"]));
    assert!(stdout(&o).is_empty(), "{}", output_text(&o));

    let nobody = Homeless::new(&dir.join("fresh"));
    let o = ok(nobody.run(&["get", &line]));
    assert!(o.stdout == pattern(5, 200_000));
    let o = ok(nobody.run(&["get", &stdin_line]));
    assert_eq!(o.stdout, b"a message on stdin");
    let listing = stdout(&ok(nobody.run(&["ls", &stdin_line])));
    assert!(listing.contains("stdin"), "{listing}");
    nobody.assert_untouched();
}

#[test]
fn put_of_a_file_and_stdin_then_get_from_eventi_server() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, home) = owner(dir.path());
    put_then_get(dir.path(), &home);
}

#[test]
fn put_of_a_file_and_stdin_then_get_from_plan9port_venti() {
    let plan9 = eventi_tests::need_plan9!();
    let dir = tempfile::tempdir().unwrap();
    let venti = eventi_tests::plan9port::Plan9Venti::start(&plan9, &dir.path().join("venti"));
    let home = dir.path().join("owner");
    ok(eventi(
        &home,
        &[
            "init",
            "--trust-on-first-use",
            "--server",
            &venti.addr.to_string(),
        ],
    ));
    put_then_get(dir.path(), &home);
}

/// Puts `text` as a drop following `follows`, if any; its line.
fn drop_message(home: &Path, text: &str, follows: Option<&str>) -> String {
    let mut args = vec!["put", "-", "--name", "move.txt"];
    if let Some(f) = follows {
        args.extend(["--follows", f]);
    }
    stdout(&ok(run_eventi_stdin(
        home,
        &[("EVENTI_PASSPHRASE", PASS)],
        args,
        text.as_bytes(),
    )))
}

fn log(nobody: &Homeless, line: &str) -> Vec<serde_json::Value> {
    let o = ok(nobody.run(&["log", "--json", line]));
    serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_chain_of_five_drops_is_walked_back_and_a_fork_is_its_own_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, home) = owner(dir.path());
    let mut lines: Vec<String> = Vec::new();
    for i in 1..=5 {
        let line = drop_message(
            &home,
            &format!("move {i}\n"),
            lines.last().map(|s| s.as_str()),
        );
        lines.push(line);
    }
    assert!(
        lines[0].starts_with("ev1f"),
        "the first drop follows nothing"
    );
    assert!(
        lines[1..].iter().all(|l| l.starts_with("ev1c")),
        "{lines:?}"
    );

    let nobody = Homeless::new(dir.path());
    let entries = log(&nobody, &lines[4]);
    let caps: Vec<&str> = entries
        .iter()
        .map(|e| e["capability"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = lines.iter().rev().map(|s| s.as_str()).collect();
    assert_eq!(caps, newest_first);
    assert!(entries
        .iter()
        .all(|e| e["name"] == "move.txt" && e["size"] == 7));

    // The newest drop alone; --all every drop, oldest first.
    assert_eq!(ok(nobody.run(&["get", &lines[4]])).stdout, b"move 5\n");
    let all = ok(nobody.run(&["get", "--all", &lines[4]]));
    assert_eq!(all.stdout, b"move 1\nmove 2\nmove 3\nmove 4\nmove 5\n");
    let target = dir.path().join("drops");
    ok(nobody.run(&["get", "--all", &lines[4], target.to_str().unwrap()]));
    for i in 1..=5 {
        let got = fs::read(target.join(format!("{i:04}-move.txt"))).unwrap();
        assert_eq!(got, format!("move {i}\n").as_bytes());
    }

    // A drop that follows move 3 forks: its chain is its own, and the
    // first chain's newest drop never reaches it.
    let fork = drop_message(&home, "another move 4\n", Some(&lines[2]));
    let forked: Vec<String> = log(&nobody, &fork)
        .iter()
        .map(|e| e["capability"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        forked,
        [
            fork.clone(),
            lines[2].clone(),
            lines[1].clone(),
            lines[0].clone()
        ]
    );
    let main_chain = log(&nobody, &lines[4]);
    assert!(main_chain.iter().all(|e| e["capability"] != fork.as_str()));
    // A drop of a different chain that claims move 5's place: another
    // capability, and it walks back to its own first drop only.
    let other_first = drop_message(&home, "move 1 of another game\n", None);
    let other = drop_message(&home, "move 5\n", Some(&other_first));
    assert_ne!(other, lines[4]);
    let theirs = log(&nobody, &other);
    assert_eq!(theirs.len(), 2);
    assert_eq!(theirs[1]["capability"], other_first.as_str());

    // Following a mistyped or made-up capability is refused.
    let o = run_eventi_stdin(
        &home,
        &[("EVENTI_PASSPHRASE", PASS)],
        ["put", "-", "--follows", &mistyped(&lines[4], 20)],
        b"x",
    );
    assert!(!o.status.success());
    assert!(output_text(&o).contains("checksum"), "{}", output_text(&o));
    nobody.assert_untouched();
}

#[test]
fn a_damaged_copy_is_passed_over_and_with_no_good_copy_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let servers: Vec<Server> = (0..2)
        .map(|i| {
            let data = dir.path().join(format!("data{i}"));
            keys_cli(&data, &["list"]);
            Server::start_strict(&data, &[])
        })
        .collect();
    let addrs: Vec<String> = servers.iter().map(|s| s.addr.to_string()).collect();
    let home = dir.path().join("owner");
    let key = stdout(&ok(eventi(
        &home,
        &[
            "init",
            "--trust-on-first-use",
            "--server",
            &addrs[0],
            "--server",
            &addrs[1],
        ],
    )));
    for s in &servers {
        keys_cli(&s.data, &["add", "owner", &key, "--quota", "10GiB"]);
    }
    let file = dir.path().join("big.bin");
    fs::write(&file, pattern(21, 4 << 20)).unwrap();
    let line = stdout(&ok(eventi(&home, &["put", file.to_str().unwrap()])));
    assert!(
        line.contains(&addrs[0]) && line.contains(&addrs[1]),
        "{line}"
    );

    // The first server the line names holds a damaged copy (its disk
    // changed while it was stopped): the good copy on the second wins.
    let mut servers = servers;
    let data0 = servers[0].data.clone();
    servers.remove(0).terminate();
    eventi_tests::damage_store(&data0);
    servers.insert(0, Server::start_on(&data0, &addrs[0], &[], |_| {}));
    let nobody = Homeless::new(dir.path());
    let got = dir.path().join("got.bin");
    ok(nobody.run(&["get", &line, got.to_str().unwrap()]));
    assert!(fs::read(&got).unwrap() == pattern(21, 4 << 20));

    // The good server goes away: no good copy is left anywhere, and the
    // get fails naming the damage, with no file, whole or partial.
    servers.remove(1).terminate();
    let lost = dir.path().join("lost.bin");
    let o = nobody.run(&["get", &line, lost.to_str().unwrap()]);
    assert!(!o.status.success(), "{}", output_text(&o));
    let text = output_text(&o);
    assert!(
        text.contains("damaged") || text.contains("corrupt"),
        "{text}"
    );
    assert!(text.contains(&addrs[1]), "the dead server is named: {text}");
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("lost") || n.starts_with(".eventi-restore-"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    nobody.assert_untouched();
}
