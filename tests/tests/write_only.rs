//! Write-only keys with the real binaries: an owner exports a key for a
//! second machine; the machine backs up (incrementally) to a real
//! eventi-server but reads nothing; the owner lists and restores the
//! machine's snapshots; the server revokes the machine alone.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use eventi::format::capability::Capability;
use eventi_tests::{keys_cli, output_text, pattern, run_eventi, Server};

const OWNER_PASS: &str = "the owner's passphrase";
const MACHINE_PASS: &str = "the machine's passphrase";

fn owner(home: &Path, args: &[&str]) -> Output {
    run_eventi(home, &[("EVENTI_PASSPHRASE", OWNER_PASS)], args)
}

fn machine(home: &Path, args: &[&str]) -> Output {
    run_eventi(home, &[("EVENTI_PASSPHRASE", MACHINE_PASS)], args)
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", output_text(&o));
    o
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn backup(run: impl Fn(&[&str]) -> Output, src: &Path) -> serde_json::Value {
    let o = ok(run(&["backup", "--json", src.to_str().unwrap()]));
    let last = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    serde_json::from_str(&last).unwrap()
}

fn source(dir: &Path, name: &str, seed: u64) -> PathBuf {
    let src = dir.join(name);
    fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..3u64 {
        fs::write(src.join(format!("f{i}")), pattern(seed + i, 700_000)).unwrap();
    }
    fs::write(src.join("sub/small"), format!("small {seed}")).unwrap();
    // The stat cache trusts a file only once its last change is 2 s old.
    std::thread::sleep(std::time::Duration::from_millis(2200));
    src
}

#[test]
fn a_write_only_machine_backs_up_reads_nothing_and_its_owner_restores_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    keys_cli(&data, &["list"]);
    let server = Server::start_strict(&data, &[]);
    let addr = server.addr.to_string();

    // The owner: a home on the server, and a write-only key exported.
    let owner_home = dir.path().join("owner");
    let owner_line = stdout(&ok(owner(
        &owner_home,
        &["init", "--trust-on-first-use", "--server", &addr],
    )));
    keys_cli(&data, &["add", "owner", &owner_line, "--quota", "10GiB"]);
    let key_file = dir.path().join("laptop2.key");
    let o = ok(run_eventi(
        &owner_home,
        &[
            ("EVENTI_PASSPHRASE", OWNER_PASS),
            ("EVENTI_NEW_PASSPHRASE", MACHINE_PASS),
        ],
        ["key", "export", "--write-only", key_file.to_str().unwrap()],
    ));
    let machine_line = stdout(&o);
    assert!(
        machine_line.starts_with("eventi-ed25519 "),
        "{}",
        output_text(&o)
    );
    assert_ne!(
        machine_line, owner_line,
        "the machine has a write key of its own"
    );
    let exported = fs::read_to_string(&key_file).unwrap();
    assert!(exported.contains("write-only"), "{exported}");
    keys_cli(
        &data,
        &["add", "laptop2", &machine_line, "--quota", "10GiB"],
    );

    // The machine: set up from the exported key alone.
    let machine_home = dir.path().join("machine");
    let o = ok(machine(
        &machine_home,
        &[
            "init",
            "--trust-on-first-use",
            "--import-key",
            key_file.to_str().unwrap(),
            "--server",
            &addr,
        ],
    ));
    assert_eq!(stdout(&o), machine_line);

    // It backs up twice; the second reads no unchanged file.
    let src = source(dir.path(), "machine-src", 40);
    let first = backup(|a| machine(&machine_home, a), &src);
    assert_eq!(first["read_files"], 4, "{first}");
    let second = backup(|a| machine(&machine_home, a), &src);
    assert_eq!(
        second["read_files"], 0,
        "unchanged files are not read: {second}"
    );
    assert_eq!(second["sent_blocks"], 0, "{second}");
    let (root1, root2) = (
        first["snapshot"].as_str().unwrap(),
        second["snapshot"].as_str().unwrap(),
    );
    assert_ne!(root1, root2);

    // It reads nothing: each refusal says why, at once (no passphrase asked).
    let target = dir.path().join("stolen");
    let file_path = format!("{root1}:{}", src.join("f0").display());
    for args in [
        vec!["snapshots"],
        vec!["ls", "latest"],
        vec!["cat", &file_path],
        vec!["diff", root1, root2],
        vec!["restore", root1, target.to_str().unwrap()],
        vec!["share", &file_path],
        vec!["check"],
        vec!["forget", "--keep-last", "1"],
        vec!["forget", root1],
    ] {
        let o = run_eventi(&machine_home, &[], &args);
        assert!(!o.status.success(), "{args:?} worked with a write-only key");
        let text = output_text(&o);
        assert!(text.contains("write-only key"), "{args:?}: {text}");
        assert!(
            !text.contains("passphrase"),
            "{args:?} asked for a passphrase: {text}"
        );
    }
    assert!(!target.exists());

    // The owner backs up too, and shares a file the machine never receives.
    let owner_src = source(dir.path(), "owner-src", 90);
    let owner_backup = backup(|a| owner(&owner_home, a), &owner_src);
    let spec = format!("latest:{}", owner_src.join("f1").display());
    let shared = stdout(&ok(owner(&owner_home, &["share", &spec])));
    // The machine may know the owner's root score and guess at capabilities:
    // a root score is no capability, and a well-formed line with a guessed
    // secret does not open the owner's envelope.
    let o = machine(
        &machine_home,
        &["get", owner_backup["snapshot"].as_str().unwrap()],
    );
    assert!(!o.status.success());
    assert!(
        output_text(&o).contains("not an eventi capability"),
        "{}",
        output_text(&o)
    );
    let real = Capability::parse(&shared).unwrap();
    let guessed = Capability {
        secret: rand::random(),
        ..real
    };
    let o = machine(&machine_home, &["get", &guessed.to_line()]);
    assert!(!o.status.success());
    assert!(
        output_text(&o).contains("does not open with the capability's secret"),
        "{}",
        output_text(&o)
    );

    // The owner lists every chain, the machine's marked, and restores both
    // of the machine's snapshots.
    let o = ok(owner(&owner_home, &["snapshots", "--all", "--json"]));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let of = |m: Option<&str>| -> Vec<String> {
        list.iter()
            .filter(|s| s["machine"].as_str() == m)
            .map(|s| s["snapshot"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(of(Some("laptop2")), [root2, root1], "{list:?}");
    assert_eq!(of(None), [owner_backup["snapshot"].as_str().unwrap()]);
    let plain = stdout(&ok(owner(&owner_home, &["snapshots"])));
    assert!(
        !plain.contains(root1),
        "without --all, only the owner's chain: {plain}"
    );
    for root in [root1, root2] {
        let out = dir.path().join(format!("restored-{root}"));
        ok(owner(
            &owner_home,
            &[
                "restore",
                &format!("{root}:{}", src.display()),
                out.to_str().unwrap(),
            ],
        ));
        eventi_tests::assert_same_file_tree(&src, &out.join("machine-src"));
    }
    // A unique prefix of a machine's root resolves too.
    let o = ok(owner(
        &owner_home,
        &["ls", &format!("{}:{}", &root2[..10], src.display())],
    ));
    assert!(stdout(&o).contains("f2"), "{}", output_text(&o));

    // The owner's laptop is gone: a home recovered from the owner's key
    // alone finds the machine list on the server, and the machine's chain.
    let owner_key = dir.path().join("owner.key");
    ok(owner(
        &owner_home,
        &["key", "export", owner_key.to_str().unwrap()],
    ));
    let recovered = dir.path().join("recovered");
    let o = ok(owner(
        &recovered,
        &[
            "init",
            "--trust-on-first-use",
            "--recover",
            "--key",
            owner_key.to_str().unwrap(),
            "--server",
            &addr,
        ],
    ));
    assert!(output_text(&o).contains("laptop2"), "{}", output_text(&o));
    let o = ok(owner(&recovered, &["snapshots", "--all", "--json"]));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let machine_roots: Vec<&str> = list
        .iter()
        .filter(|s| s["machine"] == "laptop2")
        .map(|s| s["snapshot"].as_str().unwrap())
        .collect();
    assert_eq!(machine_roots, [root2, root1], "{list:?}");

    // The server revokes the machine alone.
    keys_cli(&data, &["remove", "laptop2"]);
    fs::write(src.join("new"), b"after the revocation").unwrap();
    let o = machine(&machine_home, &["backup", src.to_str().unwrap()]);
    assert!(!o.status.success(), "a revoked key still backs up");
    assert!(output_text(&o).contains(&addr), "{}", output_text(&o));
    backup(|a| owner(&owner_home, a), &owner_src);
}

#[test]
fn a_write_only_key_needs_servers_and_cannot_export_keys() {
    let dir = tempfile::tempdir().unwrap();
    let owner_home = dir.path().join("owner");
    ok(owner(&owner_home, &["init"]));
    let key_file = dir.path().join("m.key");
    ok(run_eventi(
        &owner_home,
        &[
            ("EVENTI_PASSPHRASE", OWNER_PASS),
            ("EVENTI_NEW_PASSPHRASE", MACHINE_PASS),
        ],
        [
            "key",
            "export",
            "--write-only",
            key_file.to_str().unwrap(),
            "--name",
            "m",
        ],
    ));
    // The machine is recorded under its name; a second one of that name is refused.
    let config = fs::read_to_string(owner_home.join("config.toml")).unwrap();
    assert!(config.contains("name = \"m\""), "{config}");
    let again = run_eventi(
        &owner_home,
        &[
            ("EVENTI_PASSPHRASE", OWNER_PASS),
            ("EVENTI_NEW_PASSPHRASE", "x"),
        ],
        [
            "key",
            "export",
            "--write-only",
            dir.path().join("m2.key").to_str().unwrap(),
            "--name",
            "m",
        ],
    );
    assert!(!again.status.success());
    assert!(
        output_text(&again).contains("already"),
        "{}",
        output_text(&again)
    );

    let machine_home = dir.path().join("machine");
    let o = machine(
        &machine_home,
        &["init", "--import-key", key_file.to_str().unwrap()],
    );
    assert!(!o.status.success());
    assert!(output_text(&o).contains("--server"), "{}", output_text(&o));
    assert!(!machine_home.join("key").exists(), "nothing written");
    // A wrong passphrase: refused before anything is written.
    let o = run_eventi(
        &machine_home,
        &[("EVENTI_PASSPHRASE", "wrong")],
        [
            "init",
            "--import-key",
            key_file.to_str().unwrap(),
            "--server",
            "127.0.0.1:9",
        ],
    );
    assert!(!o.status.success());
    assert!(
        output_text(&o).contains("wrong passphrase"),
        "{}",
        output_text(&o)
    );
    assert!(!machine_home.join("key").exists());
}
