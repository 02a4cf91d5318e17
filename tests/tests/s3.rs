//! The s3 engine end to end: real `eventi-server` front-ends on one
//! bucket of a real SeaweedFS (`scripts/test` starts it and sets
//! `EVENTI_TEST_S3`), the real `eventi` client. Skipped, saying why,
//! where no object store runs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventi_shared::client::{ClientOptions, ServerKey};
use eventi_shared::{BlockType, ClientError, VentiClient};
use eventi_tests::{
    assert_same_file_tree, keys_cli, new_key, output_text, pattern, public_line, run_eventi,
    spawn_eventi, Server,
};

const PASS: &str = "one bucket, many doors";

/// The test object store and bucket, or `None` (and why, printed).
fn object_store() -> Option<(String, String)> {
    match std::env::var("EVENTI_TEST_S3") {
        Ok(url) if !url.is_empty() => Some((
            url,
            std::env::var("EVENTI_TEST_S3_BUCKET").unwrap_or_else(|_| "eventi-test".into()),
        )),
        _ => {
            eprintln!(
                "skipped: EVENTI_TEST_S3 is not set (scripts/test starts SeaweedFS and sets it)"
            );
            None
        }
    }
}

/// Front-ends of one store: one bucket prefix, one server identity (as
/// behind one name), a short poll so the tests' waits stay short.
struct Store {
    dir: PathBuf,
    url: String,
    bucket: String,
    prefix: String,
}

impl Store {
    fn new(dir: &Path, url: String, bucket: String) -> Store {
        let prefix = format!("e2e/{}-{}", std::process::id(), rand::random::<u32>());
        Store {
            dir: dir.to_path_buf(),
            url,
            bucket,
            prefix,
        }
    }

    /// Starts front-end `i` (its own data directory: the local index).
    fn front_end(&self, i: usize) -> Server {
        let data = self.dir.join(format!("frontend{i}"));
        fs::create_dir_all(&data).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).unwrap();
        let first = self.dir.join("frontend0");
        if i > 0 && !data.join("identity").exists() {
            fs::copy(first.join("identity"), data.join("identity")).unwrap();
        }
        let config = self.dir.join("s3-config.toml");
        fs::write(&config, "[storage.s3]\npoll_millis = 200\n").unwrap();
        Server::start_strict(
            &data,
            &[
                "--engine",
                "s3",
                "--s3-endpoint",
                &self.url,
                "--bucket",
                &self.bucket,
                "--s3-prefix",
                &self.prefix,
                "--config",
                config.to_str().unwrap(),
            ],
        )
    }
}

fn eventi(home: &Path, args: &[&str]) -> std::process::Output {
    run_eventi(home, &[("EVENTI_PASSPHRASE", PASS)], args)
}

fn ok(o: std::process::Output) -> std::process::Output {
    assert!(o.status.success(), "{}", output_text(&o));
    o
}

/// Points the home's config at another front-end.
fn use_front_end(home: &Path, from: &Server, to: &Server) {
    let config = home.join("config.toml");
    let text = fs::read_to_string(&config).unwrap();
    let (a, b) = (from.addr.to_string(), to.addr.to_string());
    assert!(text.contains(&a), "{text}");
    fs::write(&config, text.replace(&a, &b)).unwrap();
}

/// Waits (at most 10 s) until `server`'s key list satisfies `ready`.
fn until_keys(server: &Server, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list: serde_json::Value =
            serde_json::from_str(&keys_cli(&server.data, &["list", "--json"])).unwrap();
        if ready(&list) {
            return list;
        }
        assert!(Instant::now() < deadline, "never ready: {list}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn used_bytes(list: &serde_json::Value, name: &str) -> Option<u64> {
    list.as_array()?.iter().find(|k| k["key"]["name"] == name)?["used_bytes"].as_u64()
}

fn source(dir: &Path, name: &str, files: u64, len: usize) -> PathBuf {
    let src = dir.join(name);
    fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..files {
        fs::write(src.join(format!("f{i}")), pattern(900 + i, len)).unwrap();
    }
    fs::write(src.join("sub/small"), b"a small file").unwrap();
    src
}

#[test]
fn three_front_ends_serve_one_store_and_a_killed_one_loses_nothing() {
    let Some((url, bucket)) = object_store() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), url, bucket);
    let mut fronts = vec![store.front_end(0)];
    fronts.push(store.front_end(1));
    fronts.push(store.front_end(2));

    let home = dir.path().join("home");
    let addr0 = fronts[0].addr.to_string();
    let o = ok(eventi(
        &home,
        &["init", "--trust-on-first-use", "--server", &addr0],
    ));
    let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
    // Added through one front-end's admin socket; the others learn it.
    keys_cli(&fronts[0].data, &["add", "me", &line, "--quota", "10GiB"]);
    for f in &fronts[1..] {
        until_keys(f, |l| used_bytes(l, "me").is_some());
    }

    // Back up through the first, restore through the second, check
    // through the third.
    let src = source(dir.path(), "src", 4, 1 << 20);
    ok(eventi(&home, &["backup", src.to_str().unwrap()]));
    use_front_end(&home, &fronts[0], &fronts[1]);
    let target = dir.path().join("restored");
    let spec = format!("latest:{}", src.display());
    ok(eventi(&home, &["restore", &spec, target.to_str().unwrap()]));
    assert_same_file_tree(&src, &target.join("src"));
    use_front_end(&home, &fronts[1], &fronts[2]);
    ok(eventi(&home, &["check", "--read-data"]));

    // Kill the front-end a backup is writing through, mid-way; the
    // rerun through another completes, and restores through a third.
    use_front_end(&home, &fronts[2], &fronts[0]);
    let big = source(dir.path(), "big", 6, 16 << 20);
    let mut running = spawn_eventi(
        &home,
        &[("EVENTI_PASSPHRASE", PASS)],
        ["backup", big.to_str().unwrap()],
    );
    let written = |s: &Server| s.metric("eventi_writes_new_blocks_total");
    let before = written(&fronts[0]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while written(&fronts[0]) < before + 200.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mid_way = running.try_wait().unwrap().is_none();
    fronts.remove(0).kill9();
    let status = running.wait().unwrap();
    eprintln!("killed mid-way: {mid_way}; the backup then exited {status}");
    assert!(mid_way, "the backup ended before the front-end was killed");
    assert!(!status.success(), "a backup whose server died must fail");

    let addr = fronts[0].addr.to_string();
    let config = home.join("config.toml");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(&config, text.replace(&addr0, &addr)).unwrap();
    ok(eventi(&home, &["backup", big.to_str().unwrap()]));
    use_front_end(&home, &fronts[0], &fronts[1]);
    let target = dir.path().join("big-restored");
    let spec = format!("latest:{}", big.display());
    ok(eventi(&home, &["restore", &spec, target.to_str().unwrap()]));
    assert_same_file_tree(&big, &target.join("big"));
}

async fn as_key(server: &Server, key: &ed25519_dalek::SigningKey) -> VentiClient {
    let options = ClientOptions {
        write_key: Some(key.clone()),
        uid: "tester".into(),
        server_key: ServerKey::Learn,
        ..ClientOptions::default()
    };
    VentiClient::connect_with(server.addr, options)
        .await
        .unwrap()
}

/// Writes 32 KiB blocks (synced one by one) until the quota refuses
/// one; returns the bytes accepted and whether one was refused.
async fn fill(client: &VentiClient, seed: u64, blocks: usize) -> (u64, bool) {
    let mut stored = 0;
    for i in 0..blocks {
        let data = Bytes::from(pattern(seed * 1000 + i as u64, 32 << 10));
        match client.write(BlockType::DATA, data).await {
            Ok(_) => {
                client.sync().await.unwrap();
                stored += 32 << 10;
            }
            Err(ClientError::Server(m)) => {
                assert_eq!(m, "quota exceeded");
                return (stored, true);
            }
            Err(e) => panic!("{e}"),
        }
    }
    (stored, false)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_s_quota_holds_across_front_ends() {
    let Some((url, bucket)) = object_store() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), url, bucket);
    let fronts: Vec<Server> = (0..3).map(|i| store.front_end(i)).collect();
    let key = new_key();
    keys_cli(
        &fronts[0].data,
        &["add", "small", &public_line(&key), "--quota", "1MiB"],
    );
    for f in &fronts[1..] {
        until_keys(f, |l| used_bytes(l, "small").is_some());
    }
    // 640 KiB through the first.
    let first = as_key(&fronts[0], &key).await;
    assert_eq!(fill(&first, 1, 20).await, (640 << 10, false));
    // Within the documented delay the second knows, and stops at the quota.
    until_keys(&fronts[1], |l| used_bytes(l, "small") == Some(640 << 10));
    let second = as_key(&fronts[1], &key).await;
    assert_eq!(fill(&second, 2, 20).await, (384 << 10, true));
    // And so does the third, with nothing left.
    until_keys(&fronts[2], |l| used_bytes(l, "small") == Some(1 << 20));
    let third = as_key(&fronts[2], &key).await;
    assert_eq!(fill(&third, 3, 1).await, (0, true));
    // Duplicates stay free everywhere.
    let again = Bytes::from(pattern(1000, 32 << 10));
    third.write(BlockType::DATA, again).await.unwrap();
}
