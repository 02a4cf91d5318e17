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
    /// More `[storage.s3]` settings.
    settings: String,
}

impl Store {
    fn new(dir: &Path, url: String, bucket: String) -> Store {
        let prefix = format!("e2e/{}-{}", std::process::id(), rand::random::<u32>());
        Store {
            dir: dir.to_path_buf(),
            url,
            bucket,
            prefix,
            settings: String::new(),
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
        fs::write(
            &config,
            format!(
                "[storage.s3]\npoll_millis = 200\nretry_secs = 8\n{}",
                self.settings
            ),
        )
        .unwrap();
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
    use_address(home, &from.addr.to_string(), &to.addr.to_string());
}

/// Replaces server address `from` by `to` in the home's config.
fn use_address(home: &Path, from: &str, to: &str) {
    let config = home.join("config.toml");
    let text = fs::read_to_string(&config).unwrap();
    assert!(text.contains(from), "{text}");
    fs::write(&config, text.replace(from, to)).unwrap();
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

/// Two front-ends of `store`, and a client home (under `dir`) whose key
/// both know, added through the first.
fn two_front_ends_with_a_key(store: &Store, dir: &Path) -> ([Server; 2], PathBuf) {
    let fronts = [store.front_end(0), store.front_end(1)];
    let home = dir.join("home");
    let o = ok(eventi(
        &home,
        &[
            "init",
            "--trust-on-first-use",
            "--server",
            &fronts[0].addr.to_string(),
        ],
    ));
    let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
    keys_cli(&fronts[0].data, &["add", "me", &line, "--quota", "1GiB"]);
    until_keys(&fronts[1], |l| used_bytes(l, "me").is_some());
    (fronts, home)
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

    use_address(&home, &addr0, &fronts[0].addr.to_string());
    ok(eventi(&home, &["backup", big.to_str().unwrap()]));
    use_front_end(&home, &fronts[0], &fronts[1]);
    let target = dir.path().join("big-restored");
    let spec = format!("latest:{}", big.display());
    ok(eventi(&home, &["restore", &spec, target.to_str().unwrap()]));
    assert_same_file_tree(&big, &target.join("big"));
}

#[test]
fn with_keys_and_heads_in_postgres_every_front_end_sees_the_same_ones() {
    let Some((url, bucket)) = object_store() else {
        return;
    };
    let Some(conninfo) = std::env::var("EVENTI_TEST_POSTGRES")
        .ok()
        .filter(|c| !c.is_empty())
    else {
        eprintln!(
            "skipped: EVENTI_TEST_POSTGRES is not set (scripts/test starts PostgreSQL and sets it)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::new(dir.path(), url.clone(), bucket.clone());
    store.settings = format!("records_database = \"{conninfo}\"\n");
    let (fronts, home) = two_front_ends_with_a_key(&store, dir.path());

    // A head set through one front-end is the other's `latest`, and the
    // other way round.
    let src = source(dir.path(), "src", 3, 200_000);
    ok(eventi(&home, &["backup", src.to_str().unwrap()]));
    use_front_end(&home, &fronts[0], &fronts[1]);
    let spec = format!("latest:{}", src.display());
    let first = dir.path().join("first");
    ok(eventi(&home, &["restore", &spec, first.to_str().unwrap()]));
    assert_same_file_tree(&src, &first.join("src"));
    fs::write(src.join("f0"), b"changed through the second front-end").unwrap();
    ok(eventi(&home, &["backup", src.to_str().unwrap()]));
    use_front_end(&home, &fronts[1], &fronts[0]);
    let snaps: serde_json::Value =
        serde_json::from_slice(&ok(eventi(&home, &["snapshots", "--json"])).stdout).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 2, "{snaps}");
    let second = dir.path().join("second");
    ok(eventi(&home, &["restore", &spec, second.to_str().unwrap()]));
    assert_same_file_tree(&src, &second.join("src"));

    // The bucket holds blocks only: no key or head objects.
    let listing = std::process::Command::new("curl")
        .args([
            "-sSf",
            &format!(
                "{url}/{bucket}?list-type=2&prefix={}/records/",
                store.prefix
            ),
        ])
        .output()
        .unwrap();
    assert!(listing.status.success());
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("records/in-database"), "{listing}");
    assert!(!listing.contains("records/keys/"), "{listing}");
    assert!(!listing.contains("records/heads/"), "{listing}");
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

/// SeaweedFS processes of a test's own, killed when dropped.
struct Cluster(Vec<(String, std::process::Child)>);

impl Cluster {
    fn spawn(&mut self, name: &str, weed: &str, log: &Path, args: &[String]) {
        let child = std::process::Command::new(weed)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(fs::File::create(log).unwrap())
            .stderr(fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .unwrap();
        self.0.push((name.to_string(), child));
    }

    fn kill(&mut self, name: &str) {
        let i = self.0.iter().position(|(n, _)| n == name).unwrap();
        let (_, mut child) = self.0.remove(i);
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The status of a bodiless HTTP request to a loopback port (0 if none).
fn http_status(port: u16, method: &str, path: &str) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let mut reply = String::new();
    if s.write_all(request.as_bytes()).is_err() || s.read_to_string(&mut reply).is_err() {
        return 0;
    }
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn reads_go_on_when_one_of_two_volume_servers_dies() {
    let Some(weed) = std::env::var("EVENTI_TEST_WEED")
        .ok()
        .filter(|w| Path::new(w).is_file())
    else {
        eprintln!(
            "skipped: EVENTI_TEST_WEED does not name SeaweedFS's weed (scripts/test sets it)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Held together until all are known, so no port comes twice.
    let held: Vec<std::net::TcpListener> = (0..12)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<String> = held
        .iter()
        .map(|l| l.local_addr().unwrap().port().to_string())
        .collect();
    drop(held);
    let p = |i: usize| ports[i].clone();
    let loopback = [
        "-ip=127.0.0.1".to_string(),
        "-ip.bind=127.0.0.1".to_string(),
    ];
    let mut cluster = Cluster(Vec::new());
    // Master, filer and S3 gateway in one process, every file kept twice
    // (replication 001: two volume servers on one rack)...
    let mut args = vec![
        "server".to_string(),
        "-volume=false".into(),
        "-filer".into(),
        "-s3".into(),
    ];
    args.extend(loopback.iter().cloned());
    args.extend([
        format!("-dir={}", dir.path().join("master").display()),
        format!("-master.port={}", p(0)),
        format!("-master.port.grpc={}", p(1)),
        format!("-filer.port={}", p(2)),
        format!("-filer.port.grpc={}", p(3)),
        format!("-s3.port={}", p(4)),
        format!("-s3.port.grpc={}", p(5)),
        "-s3.port.iceberg=0".into(),
        "-s3.port.lance=0".into(),
        "-master.defaultReplication=001".into(),
        "-master.telemetry=false".into(),
    ]);
    fs::create_dir_all(dir.path().join("master")).unwrap();
    cluster.spawn("server", &weed, &dir.path().join("server.log"), &args);
    // ... and two volume servers.
    for v in 0..2 {
        let vdir = dir.path().join(format!("volume{v}"));
        fs::create_dir_all(&vdir).unwrap();
        let mut args = vec!["volume".to_string()];
        args.extend(loopback.iter().cloned());
        args.extend([
            format!("-dir={}", vdir.display()),
            format!("-port={}", p(6 + 2 * v)),
            format!("-port.grpc={}", p(7 + 2 * v)),
            format!("-mserver=127.0.0.1:{}.{}", p(0), p(1)),
            "-max=8".into(),
        ]);
        cluster.spawn(
            &format!("volume{v}"),
            &weed,
            &vdir.with_extension("log"),
            &args,
        );
    }
    let s3_port: u16 = p(4).parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_status(s3_port, "PUT", "/twocopies") != 200 {
        assert!(Instant::now() < deadline, "SeaweedFS did not start");
        std::thread::sleep(Duration::from_millis(100));
    }

    let store = Store::new(
        dir.path(),
        format!("http://127.0.0.1:{s3_port}"),
        "twocopies".into(),
    );
    let front = store.front_end(0);
    let home = dir.path().join("home");
    let addr = front.addr.to_string();
    let o = ok(eventi(
        &home,
        &["init", "--trust-on-first-use", "--server", &addr],
    ));
    let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
    keys_cli(&front.data, &["add", "me", &line, "--quota", "1GiB"]);
    let src = source(dir.path(), "src", 4, 2 << 20);
    ok(eventi(&home, &["backup", src.to_str().unwrap()]));
    let copies: Vec<u64> = (0..2)
        .map(|v| {
            eventi_tests::walk_files(&dir.path().join(format!("volume{v}")))
                .iter()
                .map(|f| fs::metadata(f).unwrap().len())
                .sum()
        })
        .collect();
    assert!(
        copies.iter().all(|&bytes| bytes > 8 << 20),
        "both volume servers hold a copy: {copies:?}"
    );

    cluster.kill("volume0");
    // A new front-end (nothing cached) reads everything from the survivor.
    drop(front);
    fs::remove_dir_all(dir.path().join("frontend0").join("s3-cache")).unwrap();
    let front = store.front_end(0);
    use_address(&home, &addr, &front.addr.to_string());
    let target = dir.path().join("restored");
    let spec = format!("latest:{}", src.display());
    ok(eventi(&home, &["restore", &spec, target.to_str().unwrap()]));
    assert_same_file_tree(&src, &target.join("src"));
    ok(eventi(&home, &["check", "--read-data"]));
}

/// Lists the bucket's pack objects under the store's prefix.
fn pack_objects(url: &str, bucket: &str, prefix: &str) -> usize {
    let listing = std::process::Command::new("curl")
        .args([
            "-sSf",
            &format!("{url}/{bucket}?list-type=2&prefix={prefix}/packs/"),
        ])
        .output()
        .unwrap();
    assert!(listing.status.success());
    String::from_utf8_lossy(&listing.stdout)
        .matches("<Key>")
        .count()
}

#[test]
fn forget_and_prune_through_one_front_end_give_the_bucket_space_back() {
    let Some((url, bucket)) = object_store() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::new(dir.path(), url.clone(), bucket.clone());
    // Small packs, a short lease, and packs repacked unless nearly full.
    store.settings =
        "pack_bytes = 262144\nlease_secs = 6\n[prune]\ngrace_secs = 0\ncompact_live_below = 0.9\n"
            .into();
    let (fronts, home) = two_front_ends_with_a_key(&store, dir.path());

    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("steady"), pattern(7, 300_000)).unwrap();
    for n in 0..4 {
        fs::write(src.join("changing"), pattern(100 + n, 400_000)).unwrap();
        ok(eventi(&home, &["backup", src.to_str().unwrap()]));
    }
    let before = pack_objects(&url, &bucket, &store.prefix);
    std::thread::sleep(Duration::from_millis(1100));

    // Forget and prune through the other front-end.
    use_front_end(&home, &fronts[0], &fronts[1]);
    let o = ok(eventi(
        &home,
        &["forget", "--keep-last", "1", "--prune", "--json"],
    ));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let pruned = &v["prune"]["stores"][0];
    assert!(pruned["dead_bytes"].as_u64().unwrap() > 900_000, "{v}");
    // Its compactor repacks in the background, the first front-end
    // following the plan.
    let deadline = Instant::now() + Duration::from_secs(60);
    while fronts[1].metric("eventi_reclaimed_bytes") < 900_000.0 {
        assert!(Instant::now() < deadline, "no repack within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = pack_objects(&url, &bucket, &store.prefix);
    eprintln!(
        "pack objects: {before} before, {after} after; {} bytes given back",
        fronts[1].metric("eventi_reclaimed_bytes")
    );
    assert!(
        after < before,
        "{before} pack objects before, {after} after"
    );

    // What is kept restores and checks through the first front-end.
    use_front_end(&home, &fronts[1], &fronts[0]);
    let target = dir.path().join("restored");
    let spec = format!("latest:{}", src.display());
    ok(eventi(&home, &["restore", &spec, target.to_str().unwrap()]));
    assert_same_file_tree(&src, &target.join("src"));
    let o = ok(eventi(&home, &["check", "--all", "--read-data", "--json"]));
    assert!(
        output_text(&o).contains("\"clean\": true"),
        "{}",
        output_text(&o)
    );
    // And the chain goes on.
    fs::write(src.join("changing"), pattern(200, 400_000)).unwrap();
    ok(eventi(&home, &["backup", src.to_str().unwrap()]));
    ok(eventi(&home, &["check", "--all", "--read-data"]));
}
