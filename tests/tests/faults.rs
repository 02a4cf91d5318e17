//! Faults that must cost a user neither data nor a friend's server: a full
//! disk, a server that stops answering, a backup killed mid-way. Real
//! servers, the real client binary, a real small filesystem (tmpfs, where
//! the tests run as root), real signals.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventi_shared::{BlockType, ClientError, Score, VentiClient};
use eventi_tests::{
    binary, config_file, is_root, keys_cli, output_text, pattern, run_eventi, spawn_eventi, Server,
};

const PASS: &str = "correct horse";

/// These tests stop servers, fill disks and time deadlines: one at a
/// time, so that one test's load does not decide another's timing.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A tmpfs of `mib` MiB mounted at `path`, unmounted on drop.
struct SmallFs {
    path: PathBuf,
}

impl SmallFs {
    /// `None` (with the reason printed) where mounting is not allowed,
    /// as in a container without CAP_SYS_ADMIN.
    fn mount(path: &Path, mib: u64) -> Option<SmallFs> {
        fs::create_dir_all(path).unwrap();
        let options = format!("size={mib}m,mode=0700");
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(path)
            .output();
        match o {
            Ok(o) if o.status.success() => Some(SmallFs {
                path: path.to_path_buf(),
            }),
            Ok(o) => {
                println!("skipped: cannot mount a tmpfs here: {}", output_text(&o));
                None
            }
            Err(e) => {
                println!("skipped: cannot run mount: {e}");
                None
            }
        }
    }

    fn free(&self) -> u64 {
        eventi_store::space::space_of(&self.path).unwrap().free
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

fn verify(data: &Path) -> Output {
    Command::new(binary("eventi-server"))
        .args(["verify", "--data"])
        .arg(data)
        .output()
        .unwrap()
}

fn server_error<T: std::fmt::Debug>(r: Result<T, ClientError>) -> String {
    match r {
        Err(ClientError::Server(m)) => m,
        other => panic!("expected a server error, got {other:?}"),
    }
}

// The guard serializes whole tests (each on its own runtime and thread);
// no task of this test waits for the lock.
#[allow(clippy::await_holding_lock)]
#[tokio::test]
async fn a_full_disk_refuses_writes_early_and_never_stops_reads() {
    let _serial = one_at_a_time();
    if !is_root() {
        println!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The data directory is the mount itself, so that the server's log
    // (beside it) stays writable when the filesystem is full.
    let Some(small) = SmallFs::mount(&dir.path().join("data"), 48) else {
        return;
    };
    let data = small.path.clone();
    let reserve: u64 = 8 << 20;
    let config = config_file(dir.path(), "[storage]\nreserve = \"8MiB\"\n");
    let config = config.to_str().unwrap().to_string();
    let args = ["--config", config.as_str()];
    let server = Server::start(&data, &args);

    // Fill it through the protocol until the server says no.
    let c = VentiClient::connect(server.addr).await.unwrap();
    let mut stored: Vec<(Score, u64)> = Vec::new();
    let refusal = loop {
        let seed = stored.len() as u64;
        match c
            .write(BlockType::DATA, Bytes::from(pattern(seed, 56 * 1024)))
            .await
        {
            Ok(score) => stored.push((score, seed)),
            Err(e) => break server_error::<()>(Err(e)),
        }
        assert!(
            stored.len() < 2000,
            "48 MiB cannot hold 2000 blocks of 56 KiB"
        );
    };
    c.sync().await.unwrap();
    assert!(
        refusal.starts_with("server disk full"),
        "refused with {refusal:?}"
    );
    let free = small.free();
    assert!(
        free >= reserve - (1 << 20),
        "refused before the filesystem was full: {free} bytes free"
    );
    assert!(
        stored.len() > 400,
        "the reserve is not all: {} blocks",
        stored.len()
    );
    // Reads go on; health and metrics say what is wrong.
    let (score, seed) = stored[7];
    let got = c.read(score, BlockType::DATA, 60 << 10).await.unwrap();
    assert_eq!(got, pattern(seed, 56 * 1024));
    let (status, body) = server.http_get("/healthz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("writes: refused: disk full"), "{body}");
    assert_eq!(server.http_get("/healthz/write").0, 503);
    assert_eq!(server.http_get("/healthz/read").0, 200);
    assert_eq!(server.metric("eventi_disk_reserve_bytes"), reserve as f64);
    assert!(server.metric("eventi_disk_free_bytes") > 0.0);
    drop(c);
    // The backup client says so, naming the server.
    let home = home_for(dir.path(), &server);
    let src = dir.path().join("src");
    big_files(&src, 1, 4);
    let o = run_eventi(
        &home,
        &[("EVENTI_PASSPHRASE", PASS)],
        ["backup", src.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&server.addr.to_string()) && err.contains("server disk full"),
        "{err}"
    );

    // A crash on a nearly full disk: every acknowledged block is served.
    server.kill9();
    let server = Server::start(&data, &args);
    let c = VentiClient::connect(server.addr).await.unwrap();
    for (score, seed) in &stored {
        let got = c.read(*score, BlockType::DATA, 60 << 10).await.unwrap();
        assert_eq!(got, pattern(*seed, 56 * 1024), "block {score}");
    }
    drop(c);
    assert!(server.terminate().success());
    let o = verify(&data);
    assert!(o.status.success(), "{}", output_text(&o));
    // Every block acknowledged (and the few the refused backup got in).
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let verified: usize = out
        .strip_prefix("verified ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(verified >= stored.len() && out.contains(" 0 bad"), "{out}");

    // Something else fills the filesystem to the last byte.
    let filler = small.path.join("filler-from-outside");
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&filler)
            .unwrap()
    };
    let chunk = vec![0u8; 1 << 20];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    while std::io::Write::write_all(&mut f, &chunk[..4096]).is_ok() {}
    drop(f);
    assert!(small.free() < 64 << 10, "full: {} bytes free", small.free());

    let server = Server::start(&data, &args);
    let c = VentiClient::connect(server.addr).await.unwrap();
    for (score, seed) in &stored {
        let got = c.read(*score, BlockType::DATA, 60 << 10).await.unwrap();
        assert_eq!(got, pattern(*seed, 56 * 1024), "block {score}");
    }
    let refused = server_error(
        c.write(BlockType::DATA, Bytes::from(pattern(99_999, 1000)))
            .await,
    );
    assert!(refused.contains("store is read-only"), "{refused}");
    assert!(
        server.log().contains("opening read-only"),
        "{}",
        server.log()
    );
    assert_eq!(server.metric("eventi_read_only"), 1.0);
    assert_eq!(server.http_get("/healthz/write").0, 503);
    drop(c);
    assert!(server.terminate().success());
    let o = verify(&data);
    assert!(
        o.status.success(),
        "verify on a full disk: {}",
        output_text(&o)
    );
}

/// A home backing up to `server` with its key authorized.
fn home_for(dir: &Path, server: &Server) -> PathBuf {
    let home = dir.join("home");
    let addr = server.addr.to_string();
    let o = run_eventi(
        &home,
        &[("EVENTI_PASSPHRASE", PASS)],
        ["init", "--trust-on-first-use", "--server", &addr],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let public = String::from_utf8_lossy(&o.stdout).trim().to_string();
    keys_cli(&server.data, &["add", "me", &public, "--quota", "10GiB"]);
    home
}

/// `count` files of `mib` MiB of distinct random-looking bytes.
fn big_files(dir: &Path, count: u64, mib: usize) {
    fs::create_dir_all(dir).unwrap();
    for i in 0..count {
        fs::write(
            dir.join(format!("file{i:02}")),
            pattern(1000 + i, mib << 20),
        )
        .unwrap();
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a server this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

/// Runs `eventi ARGS --json` on `home`, calls `at_progress` once the
/// first progress event reports `bytes_done > 0`, and returns the output
/// and how long the command took after that.
fn run_until_progress(
    home: &Path,
    args: &[&str],
    at_progress: impl FnOnce(),
) -> (Output, Duration) {
    let mut child = Command::new(binary("eventi"))
        .env("EVENTI_HOME", home)
        .env("EVENTI_PASSPHRASE", PASS)
        .env("EVENTI_PROGRESS_INTERVAL_MS", "50")
        .args(args)
        .arg("--json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            panic!("the command ended before making progress: {lines}");
        }
        lines.push_str(&line);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["event"] == "progress" && v["bytes_done"].as_u64().unwrap_or(0) > 0 {
            break;
        }
    }
    at_progress();
    let since = Instant::now();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let mut o = child.wait_with_output().unwrap();
    o.stdout = format!("{lines}{rest}").into_bytes();
    (o, since.elapsed())
}

#[test]
fn a_silent_server_fails_each_command_within_its_deadline() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_strict(&dir.path().join("data"), &[]);
    let home = home_for(dir.path(), &server);
    let src = dir.path().join("src");
    big_files(&src, 8, 24);
    let addr = server.addr.to_string();
    let env = [("EVENTI_PASSPHRASE", PASS)];
    let src_arg = src.to_str().unwrap();

    // Stopped before the handshake: the kernel still accepts the
    // connection, nobody answers the version line.
    signal(server.pid(), libc::SIGSTOP);
    let started = Instant::now();
    let o = run_eventi(&home, &env, ["--timeout", "2s", "backup", src_arg]);
    let took = started.elapsed();
    signal(server.pid(), libc::SIGCONT);
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&addr) && err.contains("no answer for 2 s during version exchange"),
        "{err}"
    );
    assert!(took < Duration::from_secs(20), "it gave up ({took:?})");

    // Stopped in the middle of a backup.
    let (o, took) = run_until_progress(&home, &["--timeout", "2s", "backup", src_arg], || {
        signal(server.pid(), libc::SIGSTOP)
    });
    signal(server.pid(), libc::SIGCONT);
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&addr) && err.contains("no answer for 2 s during"),
        "{err}"
    );
    assert!(took < Duration::from_secs(20), "it gave up ({took:?})");

    // Its rerun, with the server back, completes and restores whole.
    let o = run_eventi(&home, &env, ["backup", src_arg]);
    assert!(o.status.success(), "{}", output_text(&o));

    // Stopped in the middle of a restore.
    let target = dir.path().join("restored");
    let (o, took) = run_until_progress(
        &home,
        &[
            "--timeout",
            "2s",
            "restore",
            &format!("latest:{src_arg}"),
            target.to_str().unwrap(),
        ],
        || signal(server.pid(), libc::SIGSTOP),
    );
    signal(server.pid(), libc::SIGCONT);
    assert_ne!(o.status.code(), Some(0), "{}", output_text(&o));
    // With --json, each entry's failure is an event on stdout.
    let all = output_text(&o);
    assert!(
        all.contains(&addr) && all.contains("no answer for 2 s during read"),
        "{all}"
    );
    assert!(took < Duration::from_secs(20), "it gave up ({took:?})");

    let o = run_eventi(
        &home,
        &env,
        [
            "restore",
            &format!("latest:{src_arg}"),
            target.to_str().unwrap(),
        ],
    );
    assert!(
        o.status.success(),
        "{}\nserver log:\n{}",
        output_text(&o),
        server.log()
    );
    for i in 0..8u64 {
        let name = format!("file{i:02}");
        let restored = fs::read(target.join("src").join(&name)).unwrap();
        assert!(restored == pattern(1000 + i, 24 << 20), "{name} differs");
    }
}

/// The last `checkpoint` event's `durable_bytes` and the last progress
/// event's `bytes_done` in a `--json` output (0 for none).
fn last_durable_and_done(stdout: &str) -> (u64, u64) {
    let (mut durable, mut done) = (0, 0);
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        match v["event"].as_str() {
            Some("checkpoint") => durable = v["durable_bytes"].as_u64().unwrap(),
            Some("progress") => done = v["bytes_done"].as_u64().unwrap(),
            _ => {}
        }
    }
    (durable, done)
}

#[test]
fn a_killed_backup_of_big_files_resends_at_most_a_checkpoint() {
    let _serial = one_at_a_time();
    const FILES: u64 = 12;
    const MIB: usize = 60;
    const CHECKPOINT: u64 = 64 << 20;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    big_files(&src, FILES, MIB);
    let total = (FILES * MIB as u64) << 20;
    let src_arg = src.to_str().unwrap();
    // The bound above says something only once more than it was read: at
    // least one kill must come that late (a timing floor, not a target).
    let mut most_read = 0;
    let in_flight = 64u64 << 20;
    // Killed once an eighth, three eighths and five eighths have been
    // read, whatever the machine's speed.
    for eighths in [1u64, 3, 5] {
        let kill_after = format!("{eighths}/8 read");
        let run_dir = tempfile::tempdir_in(dir.path()).unwrap();
        let server = Server::start_strict(&run_dir.path().join("data"), &[]);
        let home = home_for(run_dir.path(), &server);
        let mut child = Command::new(binary("eventi"))
            .env("EVENTI_HOME", &home)
            .env("EVENTI_PASSPHRASE", PASS)
            .env("EVENTI_PROGRESS_INTERVAL_MS", "50")
            .args(["backup", "--json", "--checkpoint", "64MiB", src_arg])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut killed = String::new();
        let mut sent_kill = false;
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let line = line.unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            let done = v["bytes_done"].as_u64().unwrap_or(0);
            if !sent_kill && done >= total / 8 * eighths {
                child.kill().unwrap();
                sent_kill = true;
            }
            killed.push_str(&line);
            killed.push('\n');
        }
        child.wait().unwrap();
        assert!(
            !killed.contains("\"summary\""),
            "killed before the end ({kill_after})"
        );
        let (durable, done) = last_durable_and_done(&killed);
        // Checkpoints kept up with the sealing of big files: what was read
        // but is not durable is about one checkpoint plus what was in
        // flight (256 blocks of at most 56 KiB, and the workers' batches).
        assert!(
            durable + 2 * CHECKPOINT + in_flight >= done,
            "after {kill_after}: {done} bytes read, only {durable} durable"
        );
        most_read = most_read.max(done);

        let o = run_eventi(
            &home,
            &[("EVENTI_PASSPHRASE", PASS)],
            ["backup", "--json", src_arg],
        );
        assert!(o.status.success(), "{}", output_text(&o));
        let summary: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap())
                .unwrap();
        let resent = summary["sent_bytes"].as_u64().unwrap();
        // Sealing adds a tag and a header per chunk of ~32 KiB, and the
        // tree's pointer blocks come on top: 0.25% measured, 1% allowed.
        let sealed_total = total + total / 100;
        assert!(
            resent + durable <= sealed_total,
            "after {kill_after}: {durable} durable, yet the rerun sent {resent} of {total}"
        );
        println!("killed after {kill_after}: {done} bytes read, {durable} durable; the rerun sent {resent}");

        let target = run_dir.path().join("restored");
        let o = run_eventi(
            &home,
            &[("EVENTI_PASSPHRASE", PASS)],
            [
                "restore",
                &format!("latest:{src_arg}"),
                target.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", output_text(&o));
        for i in 0..FILES {
            let name = format!("file{i:02}");
            let restored = fs::read(target.join("src").join(&name)).unwrap();
            assert!(restored == pattern(1000 + i, MIB << 20), "{name} differs");
        }
    }
    assert!(
        most_read > 2 * CHECKPOINT + in_flight,
        "no kill came after enough was read ({most_read} bytes) to show checkpoints inside big files"
    );
}

#[test]
fn a_full_disk_under_the_embedded_store_stops_the_backup_cleanly() {
    let _serial = one_at_a_time();
    if !is_root() {
        println!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(small) = SmallFs::mount(&dir.path().join("home"), 64) else {
        return;
    };
    let src = dir.path().join("src");
    big_files(&src, 2, 40);
    let env = [("EVENTI_PASSPHRASE", PASS)];
    let o = run_eventi(&small.path, &env, ["backup", src.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("disk full") && err.contains("kept in reserve"),
        "{err}"
    );
    assert!(
        small.free() > 1 << 20,
        "the reserve held: {} bytes free",
        small.free()
    );
    // The store still opens and answers.
    let o = run_eventi(&small.path, &env, ["snapshots"]);
    assert!(o.status.success(), "{}", output_text(&o));
}

#[test]
fn a_second_backup_of_one_home_is_told_the_first_is_running() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_strict(&dir.path().join("data"), &[]);
    let home = home_for(dir.path(), &server);
    let src = dir.path().join("src");
    big_files(&src, 6, 24);
    let src_arg = src.to_str().unwrap();
    let mut second = None;
    let (first, _) = run_until_progress(&home, &["backup", src_arg], || {
        second = Some(run_eventi(
            &home,
            &[("EVENTI_PASSPHRASE", PASS)],
            ["backup", src_arg],
        ));
    });
    let second = second.unwrap();
    assert_eq!(second.status.code(), Some(1), "{}", output_text(&second));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use by another eventi command"), "{err}");
    assert!(!err.contains("safe to delete"), "never while in use: {err}");
    assert!(
        first.status.success(),
        "the first goes on: {}",
        output_text(&first)
    );
    // Once it is done, the next backup runs.
    let o = run_eventi(&home, &[("EVENTI_PASSPHRASE", PASS)], ["backup", src_arg]);
    assert!(o.status.success(), "{}", output_text(&o));
}

#[test]
fn a_second_command_on_an_embedded_store_is_told_the_first_is_running() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let src = dir.path().join("src");
    big_files(&src, 6, 24);
    let src_arg = src.to_str().unwrap();
    let env = [("EVENTI_PASSPHRASE", PASS)];
    let o = run_eventi(&home, &env, ["init"]);
    assert!(o.status.success(), "{}", output_text(&o));
    // The first backup waits, store open, just before its head: the
    // second command comes while it certainly runs (a race on the
    // backup's speed otherwise).
    let hold = dir.path().join("hold");
    fs::write(&hold, b"").unwrap();
    let hold_str = hold.to_str().unwrap().to_string();
    let first = spawn_eventi(
        &home,
        &[
            ("EVENTI_PASSPHRASE", PASS),
            ("EVENTI_TEST_HOLD_HEAD", &hold_str),
        ],
        ["backup", src_arg],
    );
    let waiting = PathBuf::from(format!("{hold_str}.waiting"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !waiting.exists() {
        assert!(
            Instant::now() < deadline,
            "the backup never reached its head"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = run_eventi(&home, &env, ["snapshots"]);
    fs::remove_file(&hold).unwrap();
    let first = first.wait_with_output().unwrap();
    assert_eq!(second.status.code(), Some(1), "{}", output_text(&second));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("in use by another eventi command (pid "),
        "{err}"
    );
    assert!(
        first.status.success(),
        "the first goes on: {}",
        output_text(&first)
    );
    let o = run_eventi(&home, &env, ["snapshots"]);
    assert!(o.status.success(), "{}", output_text(&o));
}

#[test]
fn a_reader_that_goes_away_ends_the_listing_quietly() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..3000 {
        fs::write(src.join(format!("file-with-a-long-name-{i:05}")), b"x").unwrap();
    }
    let env = [("EVENTI_PASSPHRASE", PASS)];
    let o = run_eventi(&home, &env, ["backup", src.to_str().unwrap()]);
    assert!(o.status.success(), "{}", output_text(&o));
    // `eventi ls -r latest:SRC | head -1`
    let mut child = Command::new(binary("eventi"))
        .env("EVENTI_HOME", &home)
        .env("EVENTI_PASSPHRASE", PASS)
        .args(["ls", "-r", &format!("latest:{}", src.display())])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(!line.is_empty());
    drop(stdout);
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
    use std::os::unix::process::ExitStatusExt;
    assert!(
        o.status.success() || o.status.signal() == Some(libc::SIGPIPE),
        "{:?}",
        o.status
    );
}
