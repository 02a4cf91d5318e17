//! Pinning with the real `eventi` binary: a first contact without a
//! terminal is refused unless trusted, a wrong `--server-key` is refused,
//! and a server whose identity changed is refused at the next backup with
//! both fingerprints.

use std::path::Path;
use std::process::Output;

use eventi_tests::{keys_cli, output_text, run_eventi, Server};

const PASS: &str = "pinned";

fn eventi(home: &Path, args: &[&str]) -> Output {
    run_eventi(home, &[("EVENTI_PASSPHRASE", PASS)], args)
}

fn identity_line(data: &Path) -> String {
    eventi_tests::server_identity(data).0
}

#[test]
fn a_server_is_pinned_on_first_contact_and_a_changed_identity_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    keys_cli(&data, &["list"]);
    let server = Server::start_strict(&data, &[]);
    let addr = server.addr.to_string();
    let line = identity_line(&data);
    let key = eventi_shared::identity::parse(&line).unwrap();
    let fingerprint = eventi_shared::identity::fingerprint(&key);
    let home = dir.path().join("home");

    // No terminal, nothing said about trust: refused, naming the
    // fingerprint and how to pin it; nothing is created.
    let o = eventi(&home, &["init", "--server", &addr]);
    assert!(!o.status.success());
    let text = output_text(&o);
    assert!(
        text.contains(&fingerprint) && text.contains("--server-key"),
        "{text}"
    );
    assert!(!home.join("key").exists());
    // A wrong line is refused with both fingerprints.
    let other = eventi_shared::identity::format(&[9; 32], "");
    let o = eventi(&home, &["init", "--server", &addr, "--server-key", &other]);
    assert!(!o.status.success());
    let text = output_text(&o);
    assert!(text.contains(&fingerprint), "{text}");
    assert!(!home.join("key").exists());
    // The line its operator sent: pinned.
    let o = eventi(&home, &["init", "--server", &addr, "--server-key", &line]);
    assert!(o.status.success(), "{}", output_text(&o));
    let config = std::fs::read_to_string(home.join("config.toml")).unwrap();
    assert!(config.contains(&line), "{config}");
    let public = String::from_utf8_lossy(&o.stdout).trim().to_string();
    keys_cli(&data, &["add", "me", &public, "--quota", "1GiB"]);
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"data").unwrap();
    let o = eventi(&home, &["backup", src.to_str().unwrap()]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(
        server.metric("eventi_sessions_encrypted_total") >= 1.0,
        "the session was encrypted"
    );

    // The server comes back with another identity: the next backup is
    // refused with both fingerprints and what to do, and writes nothing.
    server.terminate();
    std::fs::remove_file(data.join("identity")).unwrap();
    let again = Server::start_on(&data, &addr, &[], |_| {});
    let new_line = identity_line(&data);
    assert_ne!(new_line, line);
    let new_fp =
        eventi_shared::identity::fingerprint(&eventi_shared::identity::parse(&new_line).unwrap());
    let written = again.metric("eventi_stored_blocks");
    std::fs::write(src.join("g"), b"more").unwrap();
    let o = eventi(&home, &["backup", src.to_str().unwrap()]);
    assert!(!o.status.success());
    let text = output_text(&o);
    assert!(
        text.contains(&fingerprint) && text.contains(&new_fp),
        "{text}"
    );
    assert!(text.contains("operator"), "{text}");
    assert_eq!(again.metric("eventi_stored_blocks"), written);
}

/// Runs `eventi ARGS` on a pseudo-terminal (util-linux `script`), typing
/// `answer`; `None` where `script` is missing.
fn on_a_terminal(home: &Path, args: &str, answer: &str) -> Option<Output> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let script = ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let command = format!("{} {args}", eventi_tests::binary("eventi").display());
    let mut child = Command::new(script)
        .args(["-qec", &command, "/dev/null"])
        .env("EVENTI_HOME", home)
        .env("EVENTI_PASSPHRASE", PASS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    Some(child.wait_with_output().unwrap())
}

#[test]
fn on_a_terminal_the_fingerprint_is_shown_and_only_yes_pins_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    keys_cli(&data, &["list"]);
    let server = Server::start_strict(&data, &[]);
    let addr = server.addr.to_string();
    let line = identity_line(&data);
    let fingerprint =
        eventi_shared::identity::fingerprint(&eventi_shared::identity::parse(&line).unwrap());
    let home = dir.path().join("home");
    assert!(eventi(&home, &["init"]).status.success());

    let Some(no) = on_a_terminal(&home, &format!("server add {addr}"), "n\n") else {
        eprintln!("skipped: util-linux `script` not found (needed for a pseudo-terminal)");
        return;
    };
    let text = output_text(&no);
    assert!(!no.status.success(), "{text}");
    assert!(
        text.contains(&fingerprint) && text.contains("[y/N]"),
        "{text}"
    );
    let config = std::fs::read_to_string(home.join("config.toml")).unwrap();
    assert!(!config.contains(&addr), "nothing added: {config}");

    let yes = on_a_terminal(&home, &format!("server add {addr} --name friend"), "y\n").unwrap();
    assert!(yes.status.success(), "{}", output_text(&yes));
    let config = std::fs::read_to_string(home.join("config.toml")).unwrap();
    assert!(
        config.contains(&line) && config.contains("friend"),
        "{config}"
    );
}

#[test]
fn a_capability_read_holds_a_pinned_server_to_its_identity() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    keys_cli(&data, &["list"]);
    let server = Server::start_strict(&data, &[]);
    let addr = server.addr.to_string();
    let line = identity_line(&data);
    let home = dir.path().join("home");
    let o = eventi(&home, &["init", "--server", &addr, "--server-key", &line]);
    assert!(o.status.success(), "{}", output_text(&o));
    let public = String::from_utf8_lossy(&o.stdout).trim().to_string();
    keys_cli(&data, &["add", "me", &public, "--quota", "1GiB"]);
    let file = dir.path().join("note");
    std::fs::write(&file, b"pinned read").unwrap();
    let o = eventi(&home, &["put", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", output_text(&o));
    let cap = String::from_utf8_lossy(&o.stdout).trim().to_string();

    // The server comes back with another identity (its blocks kept).
    server.terminate();
    std::fs::remove_file(data.join("identity")).unwrap();
    let _again = Server::start_on(&data, &addr, &[], |_| {});
    // This home pins the old identity: its read is refused, naming it.
    let o = eventi(&home, &["get", &cap]);
    assert!(!o.status.success(), "{}", output_text(&o));
    let old_fp =
        eventi_shared::identity::fingerprint(&eventi_shared::identity::parse(&line).unwrap());
    assert!(output_text(&o).contains(&old_fp), "{}", output_text(&o));
    // Someone with no home pins nothing, and reads.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = eventi_tests::run_eventi_homeless(&empty, ["get", cap.as_str()], b"");
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(o.stdout, b"pinned read");
}

#[test]
fn a_server_added_plain_gets_plain_venti_and_refuses_keyed_writes_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    keys_cli(&data, &["list"]);
    let server = Server::start_strict(&data, &[]);
    let addr = server.addr.to_string();
    let home = dir.path().join("home");
    let o = eventi(&home, &["init", "--server", &addr, "--plain"]);
    assert!(o.status.success(), "{}", output_text(&o));
    let config = std::fs::read_to_string(home.join("config.toml")).unwrap();
    assert!(config.contains("plain = true"), "{config}");
    let public = String::from_utf8_lossy(&o.stdout).trim().to_string();
    keys_cli(&data, &["add", "me", &public, "--quota", "1GiB"]);
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"data in clear").unwrap();

    // The default server requires keyed writes to be encrypted: refused,
    // saying so.
    let o = eventi(&home, &["backup", src.to_str().unwrap()]);
    assert!(!o.status.success());
    let text = output_text(&o);
    assert!(text.contains("encrypted session"), "{text}");

    // An operator who allows it: the backup goes through in clear.
    server.terminate();
    let open = Server::start_on(&data, &addr, &["--require-encryption", "none"], |_| {});
    let o = eventi(&home, &["backup", src.to_str().unwrap()]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(open.metric("eventi_sessions_encrypted_total"), 0.0);
    assert!(open.metric("eventi_stored_blocks") > 0.0);
    let out = dir.path().join("out");
    let spec = format!("latest:{}", src.display());
    let o = eventi(&home, &["restore", &spec, out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", output_text(&o));
    eventi_tests::assert_same_file_tree(&src, &out.join("src"));
}

#[test]
fn an_unpinned_server_is_pinned_at_first_use_and_then_held_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    keys_cli(&data, &["list"]);
    let server = Server::start_strict(&data, &[]);
    let addr = server.addr.to_string();
    let home = dir.path().join("home");
    let o = eventi(&home, &["init", "--server", &addr, "--trust-on-first-use"]);
    assert!(o.status.success(), "{}", output_text(&o));
    let public = String::from_utf8_lossy(&o.stdout).trim().to_string();
    keys_cli(&data, &["add", "me", &public, "--quota", "1GiB"]);
    // The config's old form: an address and nothing pinned.
    std::fs::write(
        home.join("config.toml"),
        format!("# before pinning\nservers = [\"{addr}\"]\n"),
    )
    .unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"data").unwrap();
    let o = eventi(&home, &["backup", src.to_str().unwrap()]);
    assert!(o.status.success(), "{}", output_text(&o));
    let line = identity_line(&data);
    let fingerprint =
        eventi_shared::identity::fingerprint(&eventi_shared::identity::parse(&line).unwrap());
    assert!(
        output_text(&o).contains(&fingerprint),
        "{}",
        output_text(&o)
    );
    let config = std::fs::read_to_string(home.join("config.toml")).unwrap();
    assert!(
        config.contains(&line) && config.starts_with("# before pinning"),
        "{config}"
    );

    // Pinned now: a server with another identity at that address is refused.
    server.terminate();
    std::fs::remove_file(data.join("identity")).unwrap();
    let _again = Server::start_on(&data, &addr, &[], |_| {});
    let o = eventi(&home, &["backup", src.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        output_text(&o).contains(&fingerprint),
        "{}",
        output_text(&o)
    );
}
