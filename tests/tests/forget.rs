//! `eventi forget` with the real binary: a policy or named snapshots
//! remove snapshots from the chain through a signed history record; every
//! kept snapshot still restores, later backups continue the chain, and
//! another machine with the key sees the same history through the
//! servers' heads. (The rules themselves are tested on a synthetic history
//! with fixed times in `client/src/forget/policy.rs`.)

use std::fs;
use std::path::Path;
use std::process::Output;

use eventi_tests::{keys_cli, last_line, output_text, pattern, run_eventi, Server};

const PASS: &str = "forgetful";

fn eventi(home: &Path, args: &[&str]) -> Output {
    run_eventi(home, &[("EVENTI_PASSPHRASE", PASS)], args)
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", output_text(&o));
    o
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", output_text(o)))
}

/// The chain's root scores, newest first.
fn chain(home: &Path) -> Vec<String> {
    let list = json(&ok(eventi(home, &["snapshots", "--json"])));
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot"].as_str().unwrap().to_string())
        .collect()
}

/// Backs up `src` after writing generation `n` into it; returns the root
/// and the bytes of the file that changes.
fn generation(home: &Path, src: &Path, n: u64) -> (String, Vec<u8>) {
    let bytes = pattern(100 + n, 200_000 + n as usize);
    fs::write(src.join("changing"), &bytes).unwrap();
    let root = last_line(&ok(eventi(home, &["backup", src.to_str().unwrap()])));
    (root, bytes)
}

fn restores(home: &Path, root: &str, src: &Path, expected: &[u8], into: &Path) {
    let _ = fs::remove_dir_all(into);
    let spec = format!("{root}:{}", src.display());
    ok(eventi(home, &["restore", &spec, into.to_str().unwrap()]));
    let got = fs::read(into.join("src/changing")).unwrap();
    assert!(got == expected, "snapshot {root} restores its own bytes");
    assert!(fs::read(into.join("src/steady")).unwrap() == fs::read(src.join("steady")).unwrap());
}

#[test]
fn forget_by_policy_and_by_name_keeps_what_it_says_and_the_chain_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("steady"), pattern(7, 300_000)).unwrap();
    let gens: Vec<(String, Vec<u8>)> = (0..4).map(|n| generation(&home, &src, n)).collect();
    let roots: Vec<String> = gens.iter().rev().map(|(r, _)| r.clone()).collect();
    assert_eq!(chain(&home), roots);

    // Nothing to go by: refused.
    let o = eventi(&home, &["forget"]);
    assert!(!o.status.success());
    assert!(
        output_text(&o).contains("--keep-last"),
        "{}",
        output_text(&o)
    );

    // A dry run says what would happen and changes nothing.
    let plan = json(&ok(eventi(
        &home,
        &["forget", "--keep-last", "2", "--dry-run", "--json"],
    )));
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["keep"].as_array().unwrap().len(), 2);
    assert_eq!(plan["remove"].as_array().unwrap().len(), 2);
    assert_eq!(plan["keep"][0]["reasons"][0], "last");
    assert!(plan["history"].is_null());
    assert_eq!(chain(&home), roots);

    // The real thing: the two newest stay, each with its reason.
    let o = ok(eventi(&home, &["forget", "--keep-last", "2"]));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains("keep 2 snapshot(s)"), "{text}");
    assert!(text.contains("remove 2 snapshot(s)"), "{text}");
    assert!(text.contains("(last)"), "{text}");
    assert_eq!(chain(&home), roots[..2]);
    let restored = dir.path().join("restored");
    for (root, bytes) in &gens[2..] {
        restores(&home, root, &src, bytes, &restored);
    }
    // The removed ones are out of the chain: a prefix no longer finds them.
    let o = eventi(
        &home,
        &["restore", &roots[3][..10], restored.to_str().unwrap()],
    );
    assert!(!o.status.success());
    // Their blocks are still there (prune, not forget, gives space back):
    // by full score, the oldest still restores.
    restores(&home, &roots[3], &src, &gens[0].1, &restored);

    // The next backup follows the history record: three in the chain.
    let (fifth, fifth_bytes) = generation(&home, &src, 4);
    assert_eq!(chain(&home), [fifth.as_str(), &roots[0], &roots[1]]);
    restores(&home, "latest", &src, &fifth_bytes, &restored);

    // By name: the middle one goes; the newest and oldest stay.
    let o = ok(eventi(&home, &["forget", "--json", &roots[0][..12]]));
    let done = json(&o);
    assert_eq!(done["remove"][0]["snapshot"], roots[0].as_str());
    assert!(done["history"].is_string());
    assert_eq!(chain(&home), [fifth.as_str(), &roots[1]]);
    // A snapshot already forgotten cannot be named again.
    let o = eventi(&home, &["forget", &roots[3]]);
    assert!(!o.status.success());
    assert!(
        output_text(&o).contains("not in this chain"),
        "{}",
        output_text(&o)
    );
    // The store is whole for what is kept.
    ok(eventi(&home, &["check", "--all"]));
    restores(&home, &roots[1], &src, &gens[2].1, &restored);
}

#[test]
fn another_machine_with_the_key_sees_the_forget_through_the_servers_heads() {
    let dir = tempfile::tempdir().unwrap();
    let mut servers = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..2 {
        let data = dir.path().join(format!("data{i}"));
        keys_cli(&data, &["list"]);
        let s = Server::start_strict(&data, &[]);
        addrs.push(s.addr.to_string());
        servers.push((data, s));
    }
    let laptop = dir.path().join("laptop");
    let mut init = vec!["init", "--trust-on-first-use"];
    for a in &addrs {
        init.extend(["--server", a.as_str()]);
    }
    let line = last_line(&ok(eventi(&laptop, &init)));
    for (data, _) in &servers {
        keys_cli(data, &["add", "me", &line, "--quota", "1GiB"]);
    }
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("steady"), pattern(7, 100_000)).unwrap();
    let gens: Vec<(String, Vec<u8>)> = (0..3).map(|n| generation(&laptop, &src, n)).collect();

    // A second machine with the same key and config (a copy of the home).
    let desktop = dir.path().join("desktop");
    fs::create_dir_all(&desktop).unwrap();
    for f in ["key", "config.toml"] {
        fs::copy(laptop.join(f), desktop.join(f)).unwrap();
    }
    assert_eq!(chain(&desktop).len(), 3);

    ok(eventi(&laptop, &["forget", "--keep-last", "1"]));
    // The desktop finds the newer head on the servers: one snapshot.
    assert_eq!(chain(&desktop), [gens[2].0.as_str()]);
    // Its next backup continues that history, and the laptop sees it.
    let (next, next_bytes) = generation(&desktop, &src, 9);
    assert_eq!(chain(&laptop), [next.as_str(), &gens[2].0]);
    let restored = dir.path().join("restored");
    restores(&laptop, &gens[2].0, &src, &gens[2].1, &restored);
    restores(&laptop, "latest", &src, &next_bytes, &restored);
    // Every server holds the whole chain, history record included.
    let o = ok(eventi(&laptop, &["check", "--all", "--json"]));
    assert!(
        output_text(&o).contains("\"clean\": true"),
        "{}",
        output_text(&o)
    );
}
