//! Everything back after the laptop is gone: heads on real eventi-servers,
//! the key exported on paper and typed back, `init --recover` on an empty
//! home; and the heads' compare-and-swap and signature checks.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use eventi_shared::client::ClientOptions;
use eventi_shared::errors::KnownError;
use eventi_shared::head;
use eventi_shared::{ClientError, VentiClient};
use eventi_store::{Store, StoreOptions, Table};
use eventi_tests::{binary, keys_cli, last_line, output_text, pattern, run_eventi, Server};

const PASS: &str = "remember me";

fn eventi(home: &Path, args: &[&str]) -> Output {
    run_eventi(home, &[("EVENTI_PASSPHRASE", PASS)], args)
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", output_text(&o));
    o
}

/// `eventi ARGS` with `stdin` typed in.
fn eventi_typed(home: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(binary("eventi"))
        .env("EVENTI_HOME", home)
        .env("EVENTI_PASSPHRASE", PASS)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn snapshots(home: &Path) -> Vec<serde_json::Value> {
    let o = ok(eventi(home, &["snapshots", "--json"]));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Two servers that authorize the key of a new home with copies = 2.
fn two_servers_and_home(dir: &Path) -> (Vec<Server>, Vec<String>, std::path::PathBuf) {
    let servers: Vec<Server> = (0..2)
        .map(|i| {
            let data = dir.join(format!("data{i}"));
            keys_cli(&data, &["list"]);
            Server::start_strict(&data, &[])
        })
        .collect();
    let addrs: Vec<String> = servers.iter().map(|s| s.addr.to_string()).collect();
    let home = dir.join("home");
    let o = ok(eventi(
        &home,
        &[
            "init",
            "--trust-on-first-use",
            "--server",
            &addrs[0],
            "--server",
            &addrs[1],
        ],
    ));
    let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
    for s in &servers {
        keys_cli(&s.data, &["add", "me", &line, "--quota", "1GiB"]);
    }
    (servers, addrs, home)
}

#[test]
fn a_home_comes_back_from_the_paper_key_and_the_servers_heads() {
    let dir = tempfile::tempdir().unwrap();
    let (servers, addrs, home) = two_servers_and_home(dir.path());
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), pattern(1, 300_000)).unwrap();
    let first = last_line(&ok(eventi(&home, &["backup", src.to_str().unwrap()])));
    fs::write(src.join("b"), pattern(2, 100_000)).unwrap();
    let second = last_line(&ok(eventi(&home, &["backup", src.to_str().unwrap()])));
    let paper = String::from_utf8(ok(eventi(&home, &["key", "export", "--paper"])).stdout).unwrap();
    assert!(paper.starts_with("eventi paper key v1"), "{paper}");

    // The laptop is gone.
    fs::remove_dir_all(&home).unwrap();
    let fresh = dir.path().join("new-home");

    // A typo in one line is named, and nothing is written.
    let mut lines: Vec<String> = paper.lines().map(str::to_string).collect();
    let typo_line = 4;
    let l = lines[typo_line].clone();
    let at = l.find(": ").unwrap() + 3;
    let was = l.as_bytes()[at] as char;
    let typed = if was == '7' { '8' } else { '7' };
    lines[typo_line] = format!("{}{typed}{}", &l[..at], &l[at + 1..]);
    let recover = [
        "init",
        "--trust-on-first-use",
        "--recover",
        "--paper",
        "--server",
        &addrs[0],
        "--server",
        &addrs[1],
    ];
    let o = eventi_typed(&fresh, &recover, &lines.join("\n"));
    assert!(!o.status.success());
    assert!(
        output_text(&o).contains(&format!("line {typo_line}")),
        "{}",
        output_text(&o)
    );
    assert!(!fresh.join("key").exists(), "nothing written on a typo");

    // Typed back right, on an empty home.
    let o = eventi_typed(&fresh, &recover, &paper);
    assert!(o.status.success(), "{}", output_text(&o));
    let list = snapshots(&fresh);
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["snapshot"], second.as_str());
    assert_eq!(list[1]["snapshot"], first.as_str());
    let target = dir.path().join("restored");
    ok(eventi(
        &fresh,
        &[
            "restore",
            &format!("latest:{}", src.display()),
            target.to_str().unwrap(),
        ],
    ));
    for name in ["a", "b"] {
        assert!(
            fs::read(src.join(name)).unwrap() == fs::read(target.join("src").join(name)).unwrap()
        );
    }
    // The next backup continues the same chain.
    fs::write(src.join("c"), b"after the recovery").unwrap();
    let third = last_line(&ok(eventi(&fresh, &["backup", src.to_str().unwrap()])));
    let list = snapshots(&fresh);
    assert_eq!(list[0]["snapshot"], third.as_str());
    assert_eq!(list[0]["parent"], second.as_str());
    drop(servers);
}

#[test]
fn a_stale_head_is_refused_and_a_forged_one_is_ignored_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (mut servers, addrs, home) = two_servers_and_home(dir.path());
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"one").unwrap();
    let first = last_line(&ok(eventi(&home, &["backup", src.to_str().unwrap()])));
    let secrets = {
        let text = eventi::keys::keyfile::read(&home.join("key")).unwrap();
        eventi::keys::keyfile::open(&text, PASS.as_bytes(), "key").unwrap()
    };
    let key = secrets.signing_key();
    let public = key.verifying_key().to_bytes();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let options = ClientOptions {
            write_key: Some(key.clone()),
            server_key: eventi_shared::client::ServerKey::Learn,
            ..ClientOptions::default()
        };
        let client = VentiClient::connect_with(servers[0].addr, options)
            .await
            .unwrap();
        let stored = client.head_get(public, "default").await.unwrap().unwrap();
        assert_eq!(stored.root.to_string(), first);
        assert!(head::verify(&public, "default", &stored));
        // A machine that did not see the latest head tries the same
        // sequence: refused, and told what the server has.
        let racing = head::sign(&key, "default", eventi_shared::Score::of(b"x"), stored.seq);
        match client.head_set("default", racing, None).await {
            Err(ClientError::Server(m)) => {
                assert_eq!(KnownError::classify(&m), Some(KnownError::StaleHead), "{m}");
                assert!(m.contains(&first), "{m}");
            }
            other => panic!("expected a stale head, got {other:?}"),
        }
        // A signature by another key is refused outright.
        let other = eventi_tests::new_key();
        let forged = head::sign(&other, "default", stored.root, stored.seq + 1);
        let err = client.head_set("default", forged, None).await.unwrap_err();
        assert!(err.to_string().contains("signature"), "{err}");
        // An anonymous session may read heads but not set them.
        let anon = VentiClient::connect(servers[0].addr).await.unwrap();
        assert!(anon.head_get(public, "default").await.unwrap().is_some());
        let next = head::sign(&key, "default", stored.root, stored.seq + 1);
        let err = anon.head_set("default", next, None).await.unwrap_err();
        assert!(err.to_string().contains("authorized key"), "{err}");
    });

    // Server 1's disk (or operator) turns its head into a forgery with a
    // higher sequence: the client ignores it, says so, and keeps the
    // chain it can verify.
    let data1 = servers[1].data.clone();
    servers.remove(1).terminate();
    {
        let store = Store::open(&data1, &StoreOptions::default()).unwrap();
        let mut id = public.to_vec();
        id.extend_from_slice(b"default");
        let mut forged =
            head::SignedHead::from_bytes(&store.get_record(Table::Heads, &id).unwrap().unwrap())
                .unwrap();
        forged.seq += 10;
        store
            .put_record(Table::Heads, &id, Some(&forged.to_bytes()))
            .unwrap();
        store.shutdown().unwrap();
    }
    servers.push(Server::start_on(&data1, &addrs[1], &[], |_| {}));
    let o = ok(eventi(&home, &["snapshots"]));
    let text = output_text(&o);
    assert!(
        text.contains(&format!("ignoring the head {}", addrs[1])),
        "{text}"
    );
    assert!(text.contains(&first), "{text}");
    // The next backup sets a good head there again.
    fs::write(src.join("b"), b"two").unwrap();
    let o = eventi(&home, &["backup", src.to_str().unwrap()]);
    // The forged sequence is higher, so that server refuses ours as stale
    // and then serves only the forgery: the backup still commits (the
    // other server took the head) and names the trouble.
    assert!(o.status.success(), "{}", output_text(&o));
}

#[test]
fn two_machines_with_one_key_and_head_share_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (servers, _, laptop) = two_servers_and_home(dir.path());
    let desktop = dir.path().join("desktop");
    fs::create_dir_all(&desktop).unwrap();
    for f in ["key", "config.toml"] {
        fs::copy(laptop.join(f), desktop.join(f)).unwrap();
    }
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"from the laptop").unwrap();
    let one = last_line(&ok(eventi(&laptop, &["backup", src.to_str().unwrap()])));
    let two = last_line(&ok(eventi(&desktop, &["backup", src.to_str().unwrap()])));
    let o = ok(eventi(&laptop, &["backup", src.to_str().unwrap()]));
    let three = last_line(&o);
    assert!(
        output_text(&o).contains("another machine with this key backed up"),
        "{}",
        output_text(&o)
    );
    let list = snapshots(&laptop);
    let chain: Vec<&str> = list
        .iter()
        .map(|s| s["snapshot"].as_str().unwrap())
        .collect();
    assert_eq!(chain, [three.as_str(), two.as_str(), one.as_str()]);
    drop(servers);
}
