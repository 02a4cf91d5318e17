//! The unit files in contrib/systemd: verified and scored by
//! systemd-analyze (where it exists; nothing is started under systemd
//! here), and their command lines run as the units would run them.

use std::path::{Path, PathBuf};
use std::process::Command;

use eventi_tests::{binary, output_text};

fn contrib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/systemd")
}

/// `name` with the installed binaries' paths pointed at this build's.
fn unit_text(name: &str) -> String {
    std::fs::read_to_string(contrib().join(name))
        .unwrap()
        .replace(
            "/usr/local/bin/eventi-server",
            binary("eventi-server").to_str().unwrap(),
        )
        .replace(
            "/usr/local/bin/eventi ",
            &format!("{} ", binary("eventi").display()),
        )
}

/// Copies the named units into `dir` (as `unit_text` gives them).
fn install(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    names
        .iter()
        .map(|name| {
            let to = dir.join(Path::new(name).file_name().unwrap());
            std::fs::write(&to, unit_text(name)).unwrap();
            to
        })
        .collect()
}

fn analyze() -> Option<PathBuf> {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("systemd-analyze"))
        .find(|p| p.exists());
    if found.is_none() {
        eprintln!("skipping: systemd-analyze is not installed (scripts/setup installs it)");
    }
    found
}

/// The overall exposure `systemd-analyze security` gives a unit file, or
/// `None` where this systemd cannot score a file offline.
fn exposure(analyze: &Path, unit: &Path) -> Option<f64> {
    let o = Command::new(analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit)
        .output()
        .unwrap();
    let text = output_text(&o);
    let line = text.lines().find(|l| l.contains("Overall exposure level"));
    if line.is_none() {
        eprintln!("systemd-analyze security --offline is not available here: {text}");
    }
    let value = line?.split(':').nth(1)?.split_whitespace().next()?;
    Some(value.parse().unwrap())
}

#[test]
fn the_unit_files_verify_and_the_server_unit_is_hardened() {
    let Some(analyze) = analyze() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let system = dir.path().join("system");
    let user = dir.path().join("user");
    std::fs::create_dir_all(&system).unwrap();
    std::fs::create_dir_all(&user).unwrap();
    let units = install(
        &system,
        &[
            "eventi-server.service",
            "eventi-backup.service",
            "eventi-backup.timer",
        ],
    );
    let o = Command::new(&analyze)
        .args(["verify", "--man=no"])
        .args(&units)
        .current_dir(&system)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    no_warning_about_the_units(&o);

    let user_units = install(
        &user,
        &["user/eventi-backup.service", "user/eventi-backup.timer"],
    );
    let runtime = dir.path().join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    let o = Command::new(&analyze)
        .args(["--user", "verify", "--man=no"])
        .args(&user_units)
        .current_dir(&user)
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    no_warning_about_the_units(&o);

    // docs/OPERATIONS.md gives these scores and why each exposure left
    // is needed.
    if let Some(server) = exposure(&analyze, &units[0]) {
        eprintln!("eventi-server.service exposure {server}");
        assert!(server <= 1.5, "eventi-server.service exposure {server}");
    }
    if let Some(backup) = exposure(&analyze, &units[1]) {
        eprintln!("eventi-backup.service exposure {backup}");
        assert!(backup <= 3.0, "eventi-backup.service exposure {backup}");
    }
}

/// `systemd-analyze verify` exits 0 even on an unknown key: what it says
/// about our files (`eventi-...service:LINE: ...`) is the failure. Other
/// lines (about the machine it runs on) are shown, not failed on.
fn no_warning_about_the_units(o: &std::process::Output) {
    let text = output_text(o);
    let about_ours: Vec<&str> = text.lines().filter(|l| l.contains("eventi-")).collect();
    assert!(about_ours.is_empty(), "{}", about_ours.join("\n"));
    if !o.stderr.is_empty() {
        eprintln!(
            "systemd-analyze said: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// The value of `key=` in a unit's text (the last one).
fn setting(unit: &str, key: &str) -> String {
    unit.lines()
        .rev()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
        .to_string()
}

/// Splits a unit command line into words, expanding `${NAME}` and `$NAME`
/// words from `env` (what systemd does for these simple lines).
fn command_words(line: &str, env: &[(&str, String)]) -> Vec<String> {
    let mut words = Vec::new();
    for word in line.split_whitespace() {
        if let Some(name) = word.strip_prefix('$').filter(|n| !n.starts_with('{')) {
            let value = &env.iter().find(|(k, _)| *k == name).unwrap().1;
            words.extend(value.split_whitespace().map(str::to_string));
            continue;
        }
        let mut w = word.to_string();
        for (k, v) in env {
            w = w.replace(&format!("${{{k}}}"), v);
        }
        words.push(w);
    }
    words
}

/// The backup unit's command, run as systemd would run it: XDG settings
/// from the unit, the passphrase from a credentials directory, none in
/// the environment, no path given (they come from the config).
#[test]
fn the_backup_units_command_backs_up_the_configs_paths_with_the_credential() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_text("eventi-backup.service");
    let root = dir.path();
    let (etc, lib, cache) = (
        root.join("etc"),
        root.join("var/lib"),
        root.join("var/cache"),
    );
    let creds = root.join("credentials");
    let src = root.join("src");
    for d in [&etc, &lib, &cache, &creds, &src] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(src.join("file"), "backed up at night").unwrap();
    std::fs::write(creds.join("eventi-passphrase"), "night passphrase\n").unwrap();
    let xdg = |c: &mut Command| {
        c.env_remove("EVENTI_HOME")
            .env_remove("EVENTI_PASSPHRASE")
            .env("XDG_CONFIG_HOME", &etc)
            .env("XDG_DATA_HOME", &lib)
            .env("XDG_CACHE_HOME", &cache);
    };
    // The unit's own XDG layout.
    let env_line = setting(&unit, "Environment");
    assert!(env_line.contains("XDG_CONFIG_HOME=/etc"), "{env_line}");
    let mut init = Command::new(binary("eventi"));
    xdg(&mut init);
    init.args(["init", "--passphrase-file"])
        .arg(creds.join("eventi-passphrase"));
    let o = init.output().unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    std::fs::write(
        etc.join("eventi/config.toml"),
        format!(
            "paths = [{:?}]\ntags = [\"nightly\"]\n",
            src.display().to_string()
        ),
    )
    .unwrap();

    let words = command_words(
        &setting(&unit, "ExecStart"),
        &[("CREDENTIALS_DIRECTORY", creds.display().to_string())],
    );
    assert!(
        !words.iter().any(|w| w.contains("night passphrase")),
        "{words:?}"
    );
    let mut backup = Command::new(&words[0]);
    xdg(&mut backup);
    let o = backup.args(&words[1..]).output().unwrap();
    assert!(o.status.success(), "{words:?}: {}", output_text(&o));
    assert!(
        lib.join("eventi/store").exists(),
        "the store under XDG_DATA_HOME"
    );
    assert!(
        cache.join("eventi").exists(),
        "the cache under XDG_CACHE_HOME"
    );

    let mut list = Command::new(binary("eventi"));
    xdg(&mut list);
    let o = list
        .args(["ls", "--passphrase-file"])
        .arg(creds.join("eventi-passphrase"))
        .arg(format!("latest:{}", src.display()))
        .output()
        .unwrap();
    assert!(output_text(&o).contains("file"), "{}", output_text(&o));

    // A wrong credential fails the unit (exit 1), saying why.
    std::fs::write(creds.join("eventi-passphrase"), "wrong\n").unwrap();
    let mut backup = Command::new(&words[0]);
    xdg(&mut backup);
    let o = backup.args(&words[1..]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("passphrase"),
        "{}",
        output_text(&o)
    );
}

/// The server unit's command line serves (here on loopback, in place of
/// the unit's public address), and stops cleanly on SIGTERM.
#[test]
fn the_server_units_command_serves_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_text("eventi-server.service");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let addr = eventi_tests::free_loopback_addr();
    let words = command_words(
        &setting(&unit, "ExecStart"),
        &[
            ("STATE_DIRECTORY", state.display().to_string()),
            (
                "EVENTI_SERVER_OPTIONS",
                format!("--listen={addr} --http=off"),
            ),
        ],
    );
    let mut server = Command::new(&words[0])
        .args(&words[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: a plain signal to the child we started.
    unsafe {
        libc::kill(server.id() as i32, libc::SIGTERM);
    }
    let status = server.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut log = String::new();
    std::io::Read::read_to_string(server.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(log.contains("stopped cleanly"), "{log}");
    // The default the unit sets (Environment=) is a public address, for
    // friends to reach: the test replaced it.
    assert!(setting(&unit, "Environment").contains("--listen=0.0.0.0:17034"));
}
