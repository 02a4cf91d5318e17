//! Helpers for end-to-end tests: start the real `eventi-server` binary on
//! loopback with ephemeral ports, talk HTTP to it, stop or kill it.
//!
//! The binaries must be built first (`cargo build --release --bins`, which
//! the README's test command does); they are found next to the test
//! executable's own directory.

pub mod plan9port;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A loopback address with a port that was free a moment ago, for a
/// server that is to start there later.
pub fn free_loopback_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding loopback");
    l.local_addr().expect("local address")
}

/// Runs the `eventi` binary on the home `home` with `env` added (and no
/// passphrase from the caller's environment), stdin closed.
pub fn run_eventi<I, A>(home: &Path, env: &[(&str, &str)], args: I) -> std::process::Output
where
    I: IntoIterator<Item = A>,
    A: AsRef<std::ffi::OsStr>,
{
    eventi_command(home, env, args)
        .stdin(Stdio::null())
        .output()
        .expect("run eventi")
}

/// Starts `eventi` on the home `home` in the background, its output
/// piped.
pub fn spawn_eventi<I, A>(home: &Path, env: &[(&str, &str)], args: I) -> std::process::Child
where
    I: IntoIterator<Item = A>,
    A: AsRef<std::ffi::OsStr>,
{
    eventi_command(home, env, args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start eventi")
}

/// The `eventi` binary on the home `home` with `env` added (and no
/// passphrase from the caller's environment).
pub fn eventi_command<I, A>(home: &Path, env: &[(&str, &str)], args: I) -> Command
where
    I: IntoIterator<Item = A>,
    A: AsRef<std::ffi::OsStr>,
{
    let mut c = Command::new(binary("eventi"));
    c.env("EVENTI_HOME", home)
        .env_remove("EVENTI_PASSPHRASE")
        .env_remove("EVENTI_NEW_PASSPHRASE")
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Path of a workspace binary built into the same target directory as the
/// running test.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (cargo build --release --bins)",
        path.display()
    );
    path
}

/// The engine the suite's servers run on: `log` (the default) or, with
/// `EVENTI_TEST_ENGINE=s3`, the s3 engine on the object store that
/// `EVENTI_TEST_S3` names (`scripts/test` runs the client's end-to-end
/// tests a second time so).
pub fn suite_engine() -> String {
    std::env::var("EVENTI_TEST_ENGINE").unwrap_or_else(|_| "log".into())
}

/// The flags that put a server on the suite's engine, unless the test
/// chose an engine itself. On s3 each data directory gets a prefix of its
/// own in the bucket (the same one when a test restarts a server on it),
/// so that tests never see one another's blocks.
fn suite_engine_flags(data: &Path, extra: &[&str]) -> Vec<String> {
    if suite_engine() != "s3" || extra.contains(&"--engine") {
        return Vec::new();
    }
    let url = std::env::var("EVENTI_TEST_S3")
        .expect("EVENTI_TEST_ENGINE=s3 needs EVENTI_TEST_S3 (scripts/test sets both)");
    let bucket = std::env::var("EVENTI_TEST_S3_BUCKET").unwrap_or_else(|_| "eventi-test".into());
    let prefix = suite_prefix(data);
    [
        "--engine",
        "s3",
        "--s3-endpoint",
        &url,
        "--bucket",
        &bucket,
        "--s3-prefix",
        &prefix,
    ]
    .map(String::from)
    .to_vec()
}

/// The bucket prefix of data directory `data` when the suite runs on s3.
fn suite_prefix(data: &Path) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(data, &mut hasher);
    format!(
        "suite/{}-{:016x}",
        std::process::id(),
        std::hash::Hasher::finish(&hasher)
    )
}

/// A running `eventi-server serve`, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Server {
    child: Option<Child>,
    /// Venti address.
    pub addr: SocketAddr,
    /// HTTP address.
    pub http: SocketAddr,
    /// Data directory.
    pub data: PathBuf,
    stderr_log: PathBuf,
}

impl Server {
    /// Starts a server on `data` with extra flags (e.g. `--config F`) that
    /// lets anonymous sessions write (as plan9port's tools need).
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["--anonymous-write-quota", "unlimited"];
        args.extend_from_slice(extra);
        Server::start_strict(data, &args)
    }

    /// Starts a server with the secure defaults: anonymous sessions may
    /// read but not write.
    pub fn start_strict(data: &Path, extra: &[&str]) -> Server {
        Server::start_with(data, extra, |_| {})
    }

    /// Like [`Server::start_strict`], with `configure` applied to the
    /// command before it is spawned (a umask, another program path).
    pub fn start_with(data: &Path, extra: &[&str], configure: impl FnOnce(&mut Command)) -> Server {
        Server::start_on(data, "127.0.0.1:0", extra, configure)
    }

    /// Like [`Server::start_with`], listening on `listen` (a loopback
    /// address: a server restarted where the clients expect it).
    pub fn start_on(
        data: &Path,
        listen: &str,
        extra: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> Server {
        let stderr_log = data.with_extension("stderr.log");
        let stderr = std::fs::File::create(&stderr_log).expect("stderr log file");
        let mut command = Command::new(binary("eventi-server"));
        command
            .args(["serve", "--data"])
            .arg(data)
            .args(["--listen", listen, "--http", "127.0.0.1:0"])
            .args(suite_engine_flags(data, extra))
            .args(extra)
            .env("EVENTI_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        configure(&mut command);
        let mut child = command.spawn().expect("starting eventi-server");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the listening line");
        let field = |name: &str| -> SocketAddr {
            let log = std::fs::read_to_string(&stderr_log).unwrap_or_default();
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {line:?}; server log:\n{log}"))
                .parse()
                .expect("an address")
        };
        if suite_engine() == "s3" && !extra.contains(&"--engine") {
            let engine = std::fs::read_to_string(data.join("ENGINE")).unwrap_or_default();
            if engine.trim() != "s3" {
                terminate(&mut child);
                panic!(
                    "EVENTI_TEST_ENGINE=s3, but {} was made a {:?} store before the server started",
                    data.display(),
                    engine.trim()
                );
            }
        }
        let addr = field("venti=");
        let http = field("http=");
        Server {
            child: Some(child),
            addr,
            http,
            data: data.to_path_buf(),
            stderr_log,
        }
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Waits (up to 10 s) until the log contains `needle`; returns the log.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the server log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaping");
    }

    /// SIGTERM and wait for a clean exit (bounded).
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        terminate(&mut child)
    }

    /// GET `path` from the HTTP endpoint, naming the server by its own
    /// address: (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        self.http_request("GET", path, Some(&self.http.to_string()), "")
    }

    /// Sends one HTTP/1.1 request with the given `Host` header (none if
    /// `None`) and body: (status, body).
    pub fn http_request(
        &self,
        method: &str,
        path: &str,
        host: Option<&str>,
        body: &str,
    ) -> (u16, String) {
        let mut s = TcpStream::connect(self.http).expect("connecting to HTTP");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let host = host.map(|h| format!("Host: {h}\r\n")).unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\n{host}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).expect("reading HTTP reply");
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// A metric's value from `/metrics` (first sample whose line starts
    /// with `name`), or 0 if absent.
    pub fn metric(&self, name: &str) -> f64 {
        let (_, body) = self.http_get("/metrics");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

fn terminate(child: &mut Child) -> ExitStatus {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("eventi-server did not exit within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes a config file into `dir` and returns its path.
pub fn config_file(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("eventi-server.toml");
    std::fs::write(&path, toml).expect("writing config");
    path
}

/// `len` bytes of text that zstd shrinks about threefold (words picked by
/// [`pattern`]), the same for the same seed: big files of it are stored
/// as frames cut into pieces.
pub fn compressible(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: [&[u8]; 8] = [
        b"venti ", b"score ", b"block ", b"arena ", b"fossil ", b"plan9 ", b"log ", b"index\n",
    ];
    pattern(seed, len)
        .iter()
        .flat_map(|b| WORDS[*b as usize % WORDS.len()].iter().copied())
        .take(len)
        .collect()
}

/// `len` pseudo-random bytes determined by `seed` (xorshift): distinct
/// seeds give distinct blocks, and a test can regenerate a block to compare.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Runs `eventi-server keys --data DATA ARGS...`; returns its stdout, and
/// fails the test with its stderr if it fails.
pub fn keys_cli(data: &Path, args: &[&str]) -> String {
    if suite_engine() == "s3" && !data.join("ENGINE").exists() {
        // Offline, `keys` makes a new directory a log store: create it on
        // the suite's engine first, as an operator's first `serve` would.
        Server::start_strict(data, &[]).terminate();
    }
    let out = Command::new(binary("eventi-server"))
        .args(["keys", "--data"])
        .arg(data)
        .args(args)
        .output()
        .expect("running eventi-server keys");
    assert!(
        out.status.success(),
        "keys {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The public line (`eventi-ed25519 <hex>`) of a write key.
pub fn public_line(key: &ed25519_dalek::SigningKey) -> String {
    let hex: String = key
        .verifying_key()
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("eventi-ed25519 {hex}")
}

/// A fresh random write key.
pub fn new_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>())
}

/// Whether the tests run as root (and so can run programs as `nobody`).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The uid and gid of the user `nobody`, for tests that need another user.
pub const NOBODY: u32 = 65534;

/// A temporary directory that `nobody` can enter: under /tmp when root,
/// since `$TMPDIR` may sit under root's own home (as in CI).
pub fn tempdir_for_nobody() -> tempfile::TempDir {
    if is_root() {
        tempfile::tempdir_in("/tmp")
    } else {
        tempfile::tempdir()
    }
    .expect("temp dir")
}

/// Copies the workspace binary `name` into `dir` (mode 0755) and returns
/// the copy's path: the build directory may be one that `nobody` cannot
/// reach.
pub fn binary_copy_in(dir: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let program = dir.join(name);
    std::fs::copy(binary(name), &program).expect("copying the binary");
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))
        .expect("chmod the copy");
    program
}

/// A command's exit status, stdout and stderr, for assertion messages.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs the `eventi` binary as someone with nothing: an environment
/// holding only `PATH` and `HOME=home` (no EVENTI_HOME, no XDG
/// directories, no passphrase), feeding `stdin`.
pub fn run_eventi_homeless<I, A>(home: &Path, args: I, stdin: &[u8]) -> std::process::Output
where
    I: IntoIterator<Item = A>,
    A: AsRef<std::ffi::OsStr>,
{
    let mut c = Command::new(binary("eventi"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .args(args);
    run_with_stdin(c, stdin)
}

/// Runs the `eventi` binary on the home `home` with `env` added, feeding
/// `stdin`.
pub fn run_eventi_stdin<I, A>(
    home: &Path,
    env: &[(&str, &str)],
    args: I,
    stdin: &[u8],
) -> std::process::Output
where
    I: IntoIterator<Item = A>,
    A: AsRef<std::ffi::OsStr>,
{
    run_with_stdin(eventi_command(home, env, args), stdin)
}

fn run_with_stdin(mut c: Command, stdin: &[u8]) -> std::process::Output {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run eventi");
    let mut pipe = child.stdin.take().expect("piped stdin");
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // The command may exit without reading it all (an error).
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait for eventi");
    let _ = writer.join();
    out
}

/// The last line of a command's stdout (where eventi prints a root score
/// or a key line).
pub fn last_line(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

/// Every file under `a` is under `b` with the same bytes (directories
/// compared recursively; extra files in `b` are not looked for).
pub fn assert_same_file_tree(a: &Path, b: &Path) {
    let mut names: Vec<_> = std::fs::read_dir(a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for n in names {
        let (pa, pb) = (a.join(&n), b.join(&n));
        if pa.is_dir() {
            assert_same_file_tree(&pa, &pb);
        } else {
            assert!(
                std::fs::read(&pa).unwrap() == std::fs::read(&pb).unwrap(),
                "{} differs",
                pb.display()
            );
        }
    }
}

/// Damages the blocks of a stopped server's store, whatever its engine:
/// [`damage_log`] on a local one; on s3, the same byte flip in its
/// largest pack object, through the object store's HTTP API (with curl,
/// unsigned, as the test SeaweedFS allows).
pub fn damage_store(data: &Path) {
    let engine = std::fs::read_to_string(data.join("ENGINE")).unwrap_or_default();
    if engine.trim() != "s3" {
        return damage_log(data);
    }
    let url = std::env::var("EVENTI_TEST_S3").expect("EVENTI_TEST_S3");
    let bucket = std::env::var("EVENTI_TEST_S3_BUCKET").unwrap_or_else(|_| "eventi-test".into());
    let curl = |args: &[&str]| -> Vec<u8> {
        let out = Command::new("curl")
            .args(["-sSf"])
            .args(args)
            .output()
            .expect("running curl");
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let listing = curl(&[&format!(
        "{url}/{bucket}?list-type=2&prefix={}/packs/",
        suite_prefix(data)
    )]);
    let listing = String::from_utf8(listing).expect("an XML listing");
    // Each <Contents> holds a <Key> and a <Size>: keep the largest.
    let field = |item: &str, tag: &str| -> String {
        let start = item.find(&format!("<{tag}>")).expect("a field") + tag.len() + 2;
        let end = item[start..].find('<').expect("its end") + start;
        item[start..end].to_string()
    };
    let key = listing
        .split("<Contents>")
        .skip(1)
        .map(|item| {
            (
                field(item, "Size").parse::<u64>().unwrap(),
                field(item, "Key"),
            )
        })
        .max()
        .expect("a pack object")
        .1;
    let object = format!("{url}/{bucket}/{key}");
    let mut bytes = curl(&[&object]);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    let file = data.with_extension("damaged-pack");
    std::fs::write(&file, bytes).unwrap();
    curl(&["-T", file.to_str().unwrap(), &object]);
    std::fs::remove_file(file).unwrap();
}

/// Flips one byte in the middle of `data`'s largest log segment
/// (`log/NNNNNNNN.log`), where block bytes are.
pub fn damage_log(data: &Path) {
    let mut logs: Vec<PathBuf> = walk_files(&data.join("log"))
        .into_iter()
        .filter(|p| p.extension() == Some(std::ffi::OsStr::new("log")))
        .collect();
    logs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let log = logs.pop().expect("a log segment");
    let mut bytes = std::fs::read(&log).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&log, bytes).unwrap();
}

/// Every file below `dir`, at any depth.
pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// `eventi-server identity --data DATA`: the identity line on stdout and
/// what it says on stderr (the fingerprint); the command must succeed.
pub fn server_identity(data: &Path) -> (String, String) {
    let o = Command::new(binary("eventi-server"))
        .args(["identity", "--data"])
        .arg(data)
        .output()
        .expect("run eventi-server identity");
    assert!(o.status.success(), "{}", output_text(&o));
    (
        String::from_utf8_lossy(&o.stdout).trim().to_string(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
