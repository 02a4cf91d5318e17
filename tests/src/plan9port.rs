//! plan9port for interop tests: find an installation through `$PLAN9`, run
//! its tools, and run its venti server on loopback. Tests that use these
//! skip (with a printed reason) where `$PLAN9` names no installation, as
//! on CI.

use std::ffi::OsStr;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The plan9port tree named by `$PLAN9`, if it has the venti tools.
pub fn installation() -> Option<PathBuf> {
    let root = PathBuf::from(std::env::var_os("PLAN9")?);
    root.join("bin/venti/write").exists().then_some(root)
}

/// Returns the plan9port installation, or prints why the calling test
/// skips and returns from it.
#[macro_export]
macro_rules! need_plan9 {
    () => {
        match $crate::plan9port::installation() {
            Some(p) => p,
            None => {
                eprintln!(
                    "skipped: plan9port not found (set $PLAN9 to an installed plan9port tree)"
                );
                return;
            }
        }
    };
}

/// A command for plan9port's tool `name` (e.g. `venti/write`), with
/// `$PLAN9` set and its `bin` last on `PATH`, so the system's own tools
/// come first.
pub fn tool(plan9: &Path, name: &str) -> Command {
    let mut c = Command::new(plan9.join("bin").join(name));
    c.env("PLAN9", plan9);
    let path = std::env::var("PATH").unwrap_or_default();
    c.env("PATH", format!("{path}:{}", plan9.join("bin").display()));
    c
}

/// plan9port's venti server on a fresh, small store (sparse files in
/// `dir`), listening on loopback. It runs in its own process group, which
/// is killed on drop: the server forks, so its first pid is not enough.
pub struct Plan9Venti {
    child: Child,
    /// Venti address.
    pub addr: SocketAddr,
}

impl Plan9Venti {
    /// Formats a 1 GiB arena file, a 256 MiB index section and a bloom
    /// filter in `dir` (all sparse), then starts the server and waits until
    /// it accepts connections.
    pub fn start(plan9: &Path, dir: &Path) -> Plan9Venti {
        std::fs::create_dir_all(dir).expect("venti directory");
        let (arenas, isect, bloom) = (dir.join("arenas"), dir.join("isect"), dir.join("bloom"));
        for (file, size) in [
            (&arenas, 1u64 << 30),
            (&isect, 256 << 20),
            (&bloom, 16 << 20),
        ] {
            std::fs::File::create(file)
                .and_then(|f| f.set_len(size))
                .expect("sparse store file");
        }
        let conf = dir.join("venti.conf");
        std::fs::write(
            &conf,
            format!(
                "index main\nisect {}\narenas {}\nbloom {}\nmem 32m\nbcmem 32m\nicmem 64m\n",
                isect.display(),
                arenas.display(),
                bloom.display()
            ),
        )
        .expect("venti.conf");
        let format = |name: &str, args: &[&OsStr]| {
            let out = tool(plan9, &format!("venti/{name}"))
                .args(args)
                .output()
                .expect("a venti format tool");
            assert!(
                out.status.success(),
                "venti/{name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        format("fmtarenas", &["arenas".as_ref(), arenas.as_os_str()]);
        format("fmtisect", &["isect".as_ref(), isect.as_os_str()]);
        format("fmtbloom", &[bloom.as_os_str()]);
        format("fmtindex", &[conf.as_os_str()]);

        // An ephemeral port picked here and handed over: venti does not
        // report the port it gets for tcp!127.0.0.1!0.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::File::create(dir.join("venti.log")).expect("venti log");
        use std::os::unix::process::CommandExt;
        let child = tool(plan9, "venti/venti")
            .args(["-s", "-c"])
            .arg(&conf)
            .arg("-a")
            .arg(format!("tcp!127.0.0.1!{port}"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting plan9port venti");
        let server = Plan9Venti { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "plan9port venti did not listen on {addr}:\n{}",
                std::fs::read_to_string(dir.join("venti.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for Plan9Venti {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this struct started.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
