//! The admin plane answers the operator only, the HTTP endpoint answers
//! only requests that name the server, and the data directory is private
//! to the server's user: real servers, the real `keys` CLI, and another
//! real user (`nobody`) where the tests run as root.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bytes::Bytes;
use eventi_shared::client::ClientOptions;
use eventi_shared::{BlockType, VentiClient};
use eventi_tests::output_text as text;
use eventi_tests::{
    binary, binary_copy_in, config_file, is_root, keys_cli, new_key, pattern, public_line,
    tempdir_for_nobody, Server, NOBODY,
};

/// Runs `program args...` as `nobody`.
fn as_nobody(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap_or_else(|e| panic!("running {} as nobody: {e}", program.display()))
}

/// The names of the keys a server has, through the operator's CLI.
fn key_names(data: &Path) -> Vec<String> {
    let list: serde_json::Value =
        serde_json::from_str(&keys_cli(data, &["list", "--json"])).expect("keys list --json");
    list.as_array()
        .expect("an array")
        .iter()
        .map(|r| r["key"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// Every path under `dir`, `dir` included.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                out.push(e.unwrap().path());
            }
        }
        i += 1;
    }
    out
}

/// Paths under `dir` with any group or other permission bit.
fn open_to_others(dir: &Path) -> Vec<String> {
    walk(dir)
        .into_iter()
        .filter_map(|p| {
            let mode = fs::symlink_metadata(&p).ok()?.mode() & 0o7777;
            (mode & 0o077 != 0).then(|| format!("{} {mode:04o}", p.display()))
        })
        .collect()
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

async fn write_as(server: &Server, key: &ed25519_dalek::SigningKey, seed: u64) {
    let options = ClientOptions {
        write_key: Some(key.clone()),
        server_key: eventi_shared::client::ServerKey::Learn,
        uid: "tester".into(),
        ..ClientOptions::default()
    };
    let c = VentiClient::connect_with(server.addr, options)
        .await
        .unwrap();
    c.write(BlockType::DATA, Bytes::from(pattern(seed, 10_000)))
        .await
        .unwrap();
    c.sync().await.unwrap();
}

#[tokio::test]
async fn another_user_can_neither_manage_keys_nor_read_the_data() {
    if !is_root() {
        println!("skipped: running a process as another user needs root");
        return;
    }
    let dir = tempdir_for_nobody();
    chmod(dir.path(), 0o755);
    let data = dir.path().join("data");
    let server = Server::start_strict(&data, &[]);
    let program = binary_copy_in(dir.path(), "eventi-server");

    // The operator manages keys on the running server, no restart.
    let alice = new_key();
    keys_cli(
        &data,
        &["add", "alice", &public_line(&alice), "--quota", "10MiB"],
    );
    write_as(&server, &alice, 1).await;

    // nobody tries every command, with the data directory as created.
    let mallory = public_line(&new_key());
    let data_arg = data.to_str().unwrap();
    let attempts: [&[&str]; 4] = [
        &["add", "mallory", &mallory, "--quota", "1TB"],
        &["list", "--json"],
        &["set-quota", "alice", "1TB"],
        &["remove", "alice"],
    ];
    for args in attempts {
        let mut full = vec!["keys", "--data", data_arg];
        full.extend_from_slice(args);
        let o = as_nobody(&program, &full);
        assert!(
            !o.status.success(),
            "nobody ran keys {args:?}: {}",
            text(&o)
        );
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("ermission denied"),
            "{}",
            text(&o)
        );
        assert!(o.stdout.is_empty(), "nothing listed: {}", text(&o));
    }
    // nor read, nor even list, anything under it.
    let paths = walk(&data);
    assert!(paths.len() > 5, "the store has files: {paths:?}");
    for p in &paths {
        let o = if p.is_dir() {
            as_nobody(Path::new("/bin/ls"), &[p.to_str().unwrap()])
        } else {
            as_nobody(Path::new("/bin/cat"), &[p.to_str().unwrap()])
        };
        assert!(
            !o.status.success(),
            "nobody read {}: {}",
            p.display(),
            text(&o)
        );
    }

    // With the directory and the socket opened up by hand, the server's
    // own uid check still turns nobody away.
    chmod(&data, 0o755);
    let socket = data.join("admin.sock");
    chmod(&socket, 0o777);
    let o = as_nobody(
        &program,
        &[
            "keys", "--data", data_arg, "add", "mallory", &mallory, "--quota", "1TB",
        ],
    );
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("uid {NOBODY} may not manage keys")),
        "{}",
        text(&o)
    );
    assert_eq!(server.metric("eventi_admin_refused_total"), 1.0);
    assert!(
        server.metric("eventi_data_dir_exposures") >= 2.0,
        "the loosened modes show in /metrics"
    );
    chmod(&socket, 0o600);
    chmod(&data, 0o700);
    assert_eq!(server.metric("eventi_data_dir_exposures"), 0.0);

    // Over HTTP there is no admin route at all, whoever asks.
    let body = format!(
        r#"{{"op":"add","name":"mallory","public":"{mallory}","quota":1000000000000,"rate":null}}"#
    );
    let own = server.http.to_string();
    let (status, _) = server.http_request("POST", "/admin/keys", Some(&own), &body);
    assert_eq!(status, 404);

    // Nothing nobody tried took effect; the operator still has control.
    assert_eq!(key_names(&data), ["alice"]);
    keys_cli(&data, &["set-quota", "alice", "20MiB"]);
    keys_cli(&data, &["remove", "alice"]);
    assert!(key_names(&data).is_empty());
    assert!(server.terminate().success());

    // Stopped, the directory is refused to anyone but its owner, root
    // included: files root wrote there would lock the server out.
    std::os::unix::fs::chown(&data, Some(NOBODY), Some(NOBODY)).unwrap();
    let o = Command::new(binary("eventi-server"))
        .args(["keys", "list", "--data", data_arg])
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("belongs to uid {NOBODY}")),
        "{}",
        text(&o)
    );
}

#[tokio::test]
async fn http_answers_only_requests_that_name_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = config_file(dir.path(), "http_allowed_hosts = [\"metrics.example\"]\n");
    let server = Server::start_strict(&data, &["--config", config.to_str().unwrap()]);
    let port = server.http.port();
    let own = server.http.to_string();

    // A page that rebinds its own name to 127.0.0.1 sends that name.
    for (method, path) in [
        ("GET", "/metrics"),
        ("GET", "/healthz"),
        ("POST", "/admin/keys"),
    ] {
        let evil = format!("evil.example:{port}");
        let (status, body) = server.http_request(method, path, Some(&evil), "{}");
        assert_eq!(status, 421, "{method} {path} with a foreign Host: {body}");
        assert!(body.contains("does not name this server"), "{body}");
    }
    let (status, _) = server.http_request("GET", "/metrics", None, "");
    assert_eq!(status, 421, "no Host at all");
    let (status, _) = server.http_request("GET", "/metrics", Some("127.0.0.2"), "");
    assert_eq!(status, 421, "another loopback address");

    for host in [
        own.as_str(),
        "127.0.0.1",
        &format!("localhost:{port}"),
        "metrics.example",
    ] {
        let (status, body) = server.http_request("GET", "/metrics", Some(host), "");
        assert_eq!(status, 200, "Host {host}");
        assert!(body.contains("eventi_stored_blocks"), "{body}");
        let (status, body) = server.http_request("GET", "/healthz", Some(host), "");
        assert_eq!((status, body.as_str()), (200, "ok\n"), "Host {host}");
    }
    // The admin route is gone even for a request that names the server.
    let (status, _) = server.http_request("POST", "/admin/keys", Some(&own), r#"{"op":"list"}"#);
    assert_eq!(status, 404);
    assert_eq!(server.metric("eventi_http_host_refused_total"), 5.0);
}

/// Runs `configure`'s command with umask 000.
fn umask_000(c: &mut Command) {
    // SAFETY: umask is async-signal-safe and touches only the child.
    unsafe {
        c.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
}

#[tokio::test]
async fn under_umask_000_nothing_is_created_that_others_can_reach() {
    let dir = tempfile::tempdir().unwrap();
    // A long path: the admin socket must work past sun_path's 108 bytes.
    let data = dir
        .path()
        .join(
            "a-data-directory-with-a-name-long-enough-that-its-admin-socket-path-passes-108-bytes",
        )
        .join("data");
    assert!(data.join("admin.sock").as_os_str().len() > 108);

    // A new data directory made by the offline CLI, then a server.
    let alice = new_key();
    let mut c = Command::new(binary("eventi-server"));
    c.args(["keys", "--data"]).arg(&data).args([
        "add",
        "alice",
        &public_line(&alice),
        "--quota",
        "10MiB",
    ]);
    umask_000(&mut c);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let server = Server::start_with(&data, &[], umask_000);
    write_as(&server, &alice, 2).await;
    // Through the admin socket, on the running server.
    let bob = new_key();
    let mut c = Command::new(binary("eventi-server"));
    c.args([
        "keys",
        "add",
        "bob",
        &public_line(&bob),
        "--quota",
        "1MiB",
        "--data",
    ])
    .arg(&data);
    umask_000(&mut c);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    write_as(&server, &bob, 3).await;

    assert!(data.join("admin.sock").exists());
    assert_eq!(open_to_others(&data), Vec::<String>::new(), "while running");
    assert_eq!(server.metric("eventi_data_dir_exposures"), 0.0);
    server.kill9();
    // Crash recovery writes too.
    let server = Server::start_with(&data, &[], umask_000);
    assert_eq!(
        open_to_others(&data),
        Vec::<String>::new(),
        "after recovery"
    );
    let log = server.log();
    assert!(server.terminate().success(), "{log}");
    assert!(
        !data.join("admin.sock").exists(),
        "the socket goes at shutdown"
    );
    assert_eq!(
        open_to_others(&data),
        Vec::<String>::new(),
        "after shutdown"
    );
    let parent = data.parent().unwrap();
    assert_eq!(fs::metadata(parent).unwrap().mode() & 0o777, 0o700);

    let mut c = Command::new(binary("eventi-server"));
    c.args(["verify", "--data"]).arg(&data);
    umask_000(&mut c);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("data directory: private to its owner"),
        "{}",
        text(&o)
    );
    assert_eq!(open_to_others(&data), Vec::<String>::new(), "after verify");
}

#[tokio::test]
async fn a_data_directory_others_can_reach_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let c = VentiClient::connect(server.addr).await.unwrap();
    c.write(BlockType::DATA, Bytes::from(pattern(4, 1000)))
        .await
        .unwrap();
    c.sync().await.unwrap();
    drop(c);
    assert!(server.terminate().success());

    // As an older version, or a careless copy, would have left it.
    chmod(&data, 0o755);
    let segment = data.join("log/00000000.log");
    chmod(&segment, 0o644);
    let server = Server::start(&data, &[]);
    let log = server.wait_for_log("not private");
    assert!(log.contains("00000000.log"), "{log}");
    assert_eq!(server.metric("eventi_data_dir_exposures"), 2.0);
    assert!(server.terminate().success());

    let verify = || {
        Command::new(binary("eventi-server"))
            .args(["verify", "--data"])
            .arg(&data)
            .output()
            .unwrap()
    };
    let o = verify();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("1 good, 0 bad"), "{out}");
    assert!(
        out.contains(&format!("exposed {}: directory mode 0755", data.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("exposed {}: file mode 0644", segment.display())),
        "{out}"
    );
    assert!(
        out.contains("data directory: 2 ways for other users in"),
        "{out}"
    );

    chmod(&data, 0o700);
    chmod(&segment, 0o600);
    let o = verify();
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn an_engine_flag_other_than_the_data_directory_s_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    keys_cli(&data, &["list"]); // a new directory: a log store
    let mut serve = Command::new(binary("eventi-server"))
        .args(["serve", "--data"])
        .arg(&data)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http",
            "off",
            "--engine",
            "blobdb",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while serve.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = serve.kill();
            panic!("the server started on a log store asked to be blobdb");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = serve.wait_with_output().unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is a log store") && err.contains("--engine blobdb"),
        "{err}"
    );
}
