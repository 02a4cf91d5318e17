//! The server's identity with the real binary: made on first start,
//! private, printed by `eventi-server identity`, kept across restarts.

use std::os::unix::fs::PermissionsExt;

use eventi_tests::Server;

fn identity(data: &std::path::Path) -> (String, String) {
    eventi_tests::server_identity(data)
}

#[test]
fn the_identity_is_made_on_first_start_kept_private_and_stable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_strict(&data, &[]);
    let file = data.join("identity");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the identity is private");
    let (line, stderr) = identity(&data);
    assert!(line.starts_with("eventi-x25519 "), "{line}");
    let key = eventi_shared::identity::parse(&line).unwrap();
    let fingerprint = eventi_shared::identity::fingerprint(&key);
    assert!(stderr.contains(&fingerprint), "{stderr}");
    assert!(server.log().contains(&line), "the log names the identity");
    let secret = std::fs::read_to_string(&file).unwrap();
    let secret = secret.lines().nth(1).unwrap();
    assert!(!server.log().contains(secret), "the secret is never logged");
    assert!(!line.contains(secret));
    // A restart keeps it.
    server.terminate();
    let _again = Server::start_strict(&data, &[]);
    assert_eq!(identity(&data).0, line);
    // A data directory that has none yet gets one from the command itself.
    let fresh = dir.path().join("fresh");
    let (made, _) = identity(&fresh);
    assert_ne!(made, line);
    assert_eq!(identity(&fresh).0, made);
}
