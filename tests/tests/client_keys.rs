//! The client's key file and write key, with the real `eventi` and
//! `eventi-server` binaries.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use eventi_tests::{keys_cli, Server};

fn eventi(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    eventi_tests::run_eventi(home, env, args)
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn init_public_key_check_and_passwd() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let pw = [("EVENTI_PASSPHRASE", "first secret")];

    // No passphrase and no terminal: a clear refusal, nothing created.
    let o = eventi(&home, &[], &["init"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("no passphrase"), "{:?}", text(&o));
    assert!(!home.join("key").exists());

    let o = eventi(&home, &pw, &["init"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let line = text(&o).0.trim().to_string();
    assert!(line.starts_with("eventi-ed25519 "), "{line}");
    let mode = std::fs::metadata(home.join("key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the key file is private");
    // init never replaces a key file.
    let o = eventi(&home, &pw, &["init"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("exists already"));
    // The public line needs no passphrase.
    let o = eventi(&home, &[], &["key", "public"]);
    assert_eq!(text(&o).0.trim(), line);

    // An operator authorizes it; the client's key then authenticates.
    let data = dir.path().join("data");
    keys_cli(&data, &["add", "me", &line, "--quota", "1GiB"]);
    let server = Server::start_strict(&data, &[]);
    let addr = server.addr.to_string();
    let o = eventi(&home, &pw, &["key", "check", "--server", &addr]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o).0.contains("accepts the write key"));

    // A wrong passphrase: refused, named, nothing changed.
    let wrong = [
        ("EVENTI_PASSPHRASE", "not it"),
        ("EVENTI_NEW_PASSPHRASE", "x"),
    ];
    let o = eventi(&home, &wrong, &["key", "passwd"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("wrong passphrase"), "{:?}", text(&o));

    // passwd: the old passphrase stops working, the new one works, and
    // the key (hence the server's authorization) is the same.
    let change = [
        ("EVENTI_PASSPHRASE", "first secret"),
        ("EVENTI_NEW_PASSPHRASE", "second secret"),
    ];
    let o = eventi(&home, &change, &["key", "passwd"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(text(&eventi(&home, &[], &["key", "public"])).0.trim(), line);
    let o = eventi(&home, &pw, &["key", "check", "--server", &addr]);
    assert!(!o.status.success());
    let o = eventi(
        &home,
        &[("EVENTI_PASSPHRASE", "second secret")],
        &["key", "check", "--server", &addr],
    );
    assert!(o.status.success(), "{:?}", text(&o));

    // A key the server does not know is refused with the server's reason.
    let other = dir.path().join("other");
    assert!(eventi(&other, &pw, &["init"]).status.success());
    let o = eventi(&other, &pw, &["key", "check", "--server", &addr]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("not authorized"), "{:?}", text(&o));
}
