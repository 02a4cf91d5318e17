//! The circle: three (or four) real eventi-server processes on loopback
//! and the real eventi binary. Copies, a dead, an empty and a stopped
//! server, a damaged block on one server's disk, check and repair, and a
//! server that joins.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use eventi_tests::{free_loopback_addr, keys_cli, output_text, pattern, run_eventi, Server};

const PASS: &str = "circle of friends";

fn eventi(home: &Path, args: &[&str]) -> Output {
    run_eventi(home, &[("EVENTI_PASSPHRASE", PASS)], args)
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", output_text(&o));
    o
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", output_text(o)))
}

/// A home whose circle is `addrs` with `copies`; returns its public key line.
fn init(home: &Path, addrs: &[String], copies: usize) -> String {
    let mut args = vec!["init", "--trust-on-first-use"];
    for a in addrs {
        args.extend(["--server", a]);
    }
    let o = ok(eventi(home, &args));
    let config = home.join("config.toml");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(&config, format!("{text}copies = {copies}\n")).unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A data directory that authorizes `line` with room to spare.
fn authorize(data: &Path, line: &str) {
    keys_cli(data, &["add", "me", line, "--quota", "10GiB"]);
}

/// A source tree of a few MiB in several files.
fn source(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..4u64 {
        fs::write(src.join(format!("f{i}")), pattern(70 + i, 1 << 20)).unwrap();
    }
    fs::write(src.join("sub/small"), b"small").unwrap();
    src
}

fn backup(home: &Path, src: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["backup", "--json"];
    args.extend(extra);
    args.push(src.to_str().unwrap());
    let o = ok(eventi(home, &args));
    let last = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    serde_json::from_str(&last).unwrap()
}

/// Three servers with data directories under `dir`, each authorizing nothing yet.
fn three(dir: &Path) -> Vec<Server> {
    (0..3)
        .map(|i| {
            let data = dir.join(format!("data{i}"));
            keys_cli(&data, &["list"]);
            Server::start_strict(&data, &[])
        })
        .collect()
}

/// Three servers and a home whose circle they are, with `copies`, its
/// key authorized on each: (servers, their addresses, the home, the key line).
fn circle_home(dir: &Path, copies: usize) -> (Vec<Server>, Vec<String>, PathBuf, String) {
    let servers = three(dir);
    let addrs: Vec<String> = servers.iter().map(|s| s.addr.to_string()).collect();
    let home = dir.join("home");
    let line = init(&home, &addrs, copies);
    for s in &servers {
        authorize(&s.data, &line);
    }
    (servers, addrs, home, line)
}

fn check(home: &Path, extra: &[&str]) -> (bool, serde_json::Value) {
    let mut args = vec!["check", "--json"];
    args.extend(extra);
    let o = eventi(home, &args);
    (o.status.success(), json(&o))
}

fn server_report<'a>(report: &'a serde_json::Value, addr: &str) -> &'a serde_json::Value {
    report["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["address"] == addr)
        .unwrap_or_else(|| panic!("no {addr} in {report}"))
}

#[test]
fn copies_three_restore_survives_a_dead_server_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let (servers, addrs, home, _) = circle_home(dir.path(), 3);
    let src = source(dir.path());
    let summary = backup(&home, &src, &[]);
    assert_eq!(summary["short_on"], serde_json::json!([]), "{summary}");
    // Every server has everything.
    let (clean, report) = check(&home, &[]);
    assert!(clean, "{report}");

    let mut servers = servers;
    servers.remove(1).kill9();
    let target = dir.path().join("restored");
    let spec = format!("latest:{}", src.display());
    let o = ok(eventi(&home, &["restore", &spec, target.to_str().unwrap()]));
    assert!(
        output_text(&o).contains(&addrs[1]),
        "names the dead server: {}",
        output_text(&o)
    );
    eventi_tests::assert_same_file_tree(&src, &target.join("src"));
    // A backup needs all three copies, so it fails, naming the dead one.
    fs::write(src.join("new"), b"new").unwrap();
    let o = eventi(&home, &["backup", src.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(output_text(&o).contains(&addrs[1]), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("copies = 3"),
        "{}",
        output_text(&o)
    );
    let o = ok(eventi(&home, &["snapshots", "--json"]));
    assert_eq!(
        json(&o).as_array().unwrap().len(),
        1,
        "the chain is unchanged"
    );
}

#[test]
fn a_down_server_is_short_then_check_names_it_and_repair_fills_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut servers = three(dir.path());
    // The third is down from the start (its address reserved for later).
    let late = servers.pop().unwrap();
    let late_data = late.data.clone();
    drop(late);
    let late_addr = free_loopback_addr().to_string();
    let mut addrs: Vec<String> = servers.iter().map(|s| s.addr.to_string()).collect();
    addrs.push(late_addr.clone());
    let home = dir.path().join("home");
    let line = init(&home, &addrs, 2);
    for s in &servers {
        authorize(&s.data, &line);
    }
    let src = source(dir.path());
    let summary = backup(&home, &src, &[]);
    assert_eq!(
        summary["short_on"],
        serde_json::json!([late_addr]),
        "{summary}"
    );
    let snaps = json(&ok(eventi(&home, &["snapshots", "--json"])));
    assert_eq!(
        snaps[0]["short_on"][0]["server"],
        late_addr.as_str(),
        "{snaps}"
    );
    let text = output_text(&ok(eventi(&home, &["snapshots"])));
    assert!(text.contains(&format!("short on {late_addr}")), "{text}");

    // It comes back empty (a new disk): check names it, missing everything.
    fs::remove_dir_all(&late_data).unwrap();
    keys_cli(&late_data, &["list"]);
    authorize(&late_data, &line);
    let _late = Server::start_on(&late_data, &late_addr, &[], |_| {});
    let (clean, report) = check(&home, &[]);
    assert!(!clean, "{report}");
    let blocks = report["blocks"].as_u64().unwrap();
    assert!(blocks > 4, "{report}");
    let late_report = server_report(&report, &late_addr);
    assert_eq!(
        late_report["missing"].as_array().unwrap().len() as u64,
        blocks
    );
    assert_eq!(late_report["method"], "presence");
    assert!(server_report(&report, &addrs[0])["missing"]
        .as_array()
        .unwrap()
        .is_empty());

    let o = ok(eventi(&home, &["repair", "--json"]));
    let repaired = json(&o);
    assert_eq!(
        server_report(&repaired, &late_addr)["copied"].as_u64(),
        Some(blocks),
        "{repaired}"
    );
    let (clean, report) = check(&home, &[]);
    assert!(clean, "{report}");
    let snaps = json(&ok(eventi(&home, &["snapshots", "--json"])));
    assert_eq!(
        snaps[0]["short_on"],
        serde_json::json!([]),
        "repair clears it: {snaps}"
    );
    // What it now holds is whole, not only present.
    let (clean, report) = check(&home, &["--read-data"]);
    assert!(clean, "{report}");
    drop(servers);
}

#[test]
fn a_stopped_server_holds_a_backup_only_until_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (servers, addrs, home, _) = circle_home(dir.path(), 2);
    let src = source(dir.path());
    // SAFETY: kill(2) on a server this test started.
    unsafe { libc::kill(servers[2].pid() as i32, libc::SIGSTOP) };
    let started = std::time::Instant::now();
    let summary = backup(&home, &src, &["--timeout", "2s"]);
    let took = started.elapsed();
    unsafe { libc::kill(servers[2].pid() as i32, libc::SIGCONT) };
    assert_eq!(
        summary["short_on"],
        serde_json::json!([addrs[2]]),
        "{summary}"
    );
    // Connect, then the writes in flight: each waits one timeout at most.
    assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
    let snaps = json(&ok(eventi(&home, &["snapshots", "--json"])));
    assert_eq!(snaps[0]["short_on"][0]["server"], addrs[2].as_str());
    // Once it answers again, repair fills it.
    ok(eventi(&home, &["repair"]));
    let (clean, report) = check(&home, &[]);
    assert!(clean, "{report}");
}

#[test]
fn a_damaged_block_is_read_from_another_server_and_check_read_data_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut servers, addrs, home, _) = circle_home(dir.path(), 3);
    let src = source(dir.path());
    backup(&home, &src, &[]);
    // Damage server 0's disk while it is stopped, and bring it back on
    // the same address (nothing of the block is left in its memory).
    let data0 = servers[0].data.clone();
    servers.remove(0).terminate();
    eventi_tests::damage_store(&data0);
    servers.insert(0, Server::start_on(&data0, &addrs[0], &[], |_| {}));

    let target = dir.path().join("restored");
    let spec = format!("latest:{}", src.display());
    // Restore reads from every server; whichever it asks for the damaged
    // block, the good copy elsewhere wins.
    let o = ok(eventi(&home, &["restore", &spec, target.to_str().unwrap()]));
    eventi_tests::assert_same_file_tree(&src, &target.join("src"));
    let (clean, report) = check(&home, &[]);
    assert!(clean, "presence alone cannot see damage: {report}");
    let (clean, report) = check(&home, &["--read-data"]);
    assert!(!clean, "{report}");
    let damaged = server_report(&report, &addrs[0])["damaged"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(damaged.len(), 1, "{report}");
    for a in &addrs[1..] {
        assert!(server_report(&report, a)["damaged"]
            .as_array()
            .unwrap()
            .is_empty());
    }
    let text = output_text(&eventi(&home, &["check", "--read-data"]));
    assert!(
        text.contains(damaged[0].as_str().unwrap()),
        "names the block: {text}"
    );
    assert!(text.contains(&format!("{}: DAMAGED 1", addrs[0])), "{text}");
    drop(o);
}

#[test]
fn a_fourth_server_joins_without_a_new_chain_and_repair_fills_it() {
    let dir = tempfile::tempdir().unwrap();
    let (servers, _, home, line) = circle_home(dir.path(), 3);
    let src = source(dir.path());
    // The stat cache trusts a file only once its last change is 2 s old.
    std::thread::sleep(std::time::Duration::from_millis(2200));
    let first = backup(&home, &src, &[]);

    let data3 = dir.path().join("data3");
    keys_cli(&data3, &["list"]);
    authorize(&data3, &line);
    let fourth = Server::start_strict(&data3, &[]);
    let addr3 = fourth.addr.to_string();
    ok(eventi(
        &home,
        &[
            "server",
            "add",
            &addr3,
            "--name",
            "dee",
            "--trust-on-first-use",
        ],
    ));
    let list = json(&ok(eventi(&home, &["server", "list", "--json"])));
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 4, "{list}");
    let dee = rows.iter().find(|r| r["name"] == "dee").unwrap();
    assert_eq!(dee["address"], addr3.as_str());
    assert_eq!(dee["reachable"], true);
    assert_eq!(dee["authorized"], true);
    assert_eq!(dee["quota_bytes"].as_u64(), Some(10 << 30));
    assert_eq!(dee["used_bytes"].as_u64(), Some(0));
    assert!(
        rows.iter().all(|r| r["latency_ms"].as_f64().is_some()),
        "{list}"
    );
    let text = output_text(&ok(eventi(&home, &["snapshots"])));
    assert!(text.contains("short on dee"), "it joined empty: {text}");

    // The chain and the stat cache are kept: an unchanged re-backup reads
    // no file and its parent is the first snapshot.
    let second = backup(&home, &src, &[]);
    assert_eq!(second["read_files"], 0, "{second}");
    let snaps = json(&ok(eventi(&home, &["snapshots", "--json"])));
    assert_eq!(snaps.as_array().unwrap().len(), 2);
    assert_eq!(snaps[0]["parent"], first["snapshot"]);

    let (clean, report) = check(&home, &["--all"]);
    assert!(!clean, "{report}");
    assert!(!server_report(&report, &addr3)["missing"]
        .as_array()
        .unwrap()
        .is_empty());
    ok(eventi(&home, &["repair", "--all"]));
    let (clean, report) = check(&home, &["--all"]);
    assert!(clean, "{report}");
    let text = output_text(&ok(eventi(&home, &["snapshots"])));
    assert!(!text.contains("short on"), "{text}");

    // A server can leave; copies above what is left is refused first.
    let o = eventi(&home, &["server", "remove", "dee"]);
    assert!(o.status.success(), "{}", output_text(&o));
    let config = fs::read_to_string(home.join("config.toml")).unwrap();
    assert!(!config.contains(&addr3), "{config}");
    drop(servers);
}

#[test]
fn a_slow_server_is_left_behind_once_the_others_keep_up() {
    let dir = tempfile::tempdir().unwrap();
    let servers = three(dir.path());
    let addrs: Vec<String> = servers.iter().map(|s| s.addr.to_string()).collect();
    let home = dir.path().join("home");
    let line = init(&home, &addrs, 2);
    let config = home.join("config.toml");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(&config, format!("{text}lag = \"1s\"\n")).unwrap();
    authorize(&servers[0].data, &line);
    authorize(&servers[1].data, &line);
    // The third answers, but takes at most 1 MiB a second.
    keys_cli(
        &servers[2].data,
        &["add", "me", &line, "--quota", "10GiB", "--rate", "1MiB/s"],
    );
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..4u64 {
        fs::write(src.join(format!("big{i}")), pattern(90 + i, 6 << 20)).unwrap();
    }
    let started = std::time::Instant::now();
    let o = ok(run_eventi(
        &home,
        &[
            ("EVENTI_PASSPHRASE", PASS),
            ("EVENTI_PROGRESS_INTERVAL_MS", "250"),
        ],
        ["backup", "--json", src.to_str().unwrap()],
    ));
    let took = started.elapsed();
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(
        summary["short_on"],
        serde_json::json!([addrs[2]]),
        "{summary}"
    );
    assert!(output_text(&o).contains("too slow"), "{}", output_text(&o));
    println!("backup with a slow server took {took:?}");
    // 24 MiB at 1 MiB/s would take 24 s; with lag = 1s it is left behind
    // within a few seconds.
    assert!(took < std::time::Duration::from_secs(8), "took {took:?}");
    let (clean, report) = check(&home, &[]);
    assert!(!clean, "the slow one lacks blocks: {report}");
    assert!(!server_report(&report, &addrs[2])["missing"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn a_local_home_that_adds_a_dead_server_is_told_and_its_backup_names_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let src = source(dir.path());
    ok(eventi(&home, &["init"]));
    ok(eventi(&home, &["backup", src.to_str().unwrap()]));
    let dead = free_loopback_addr().to_string();
    let o = ok(eventi(&home, &["server", "add", &dead]));
    assert!(
        output_text(&o).contains("start a new chain"),
        "{}",
        output_text(&o)
    );
    let o = eventi(&home, &["--timeout", "2s", "backup", src.to_str().unwrap()]);
    assert!(!o.status.success());
    let text = output_text(&o);
    assert!(
        text.contains(&dead) && text.contains("copies = 1"),
        "{text}"
    );
    assert!(
        !text.contains("recorded for `eventi repair`"),
        "nothing is recorded: {text}"
    );
    let o = eventi(&home, &["--timeout", "2s", "snapshots"]);
    assert!(!o.status.success());
    assert!(output_text(&o).contains(&format!("no configured server answers: {dead}")));
    let o = eventi(&home, &["--timeout", "2s", "server", "list"]);
    assert!(!o.status.success(), "a server that does not answer: exit 1");
    assert!(output_text(&o).contains("DOWN"), "{}", output_text(&o));
}
