//! Encrypted sessions with the real eventi-server on loopback: the
//! pinned identity, a wrong one, a first contact, the write key inside,
//! plain venti on the same port, and a proxy in the middle that changes
//! one byte or replays a recorded session.

use bytes::Bytes;
use eventi_shared::client::{ClientOptions, ServerKey};
use eventi_shared::{BlockType, ClientError, Score, VentiClient};
use eventi_tests::{keys_cli, new_key, public_line, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The server's identity key, as `eventi-server identity` prints it.
fn identity(server: &Server) -> [u8; 32] {
    let (line, _) = eventi_tests::server_identity(&server.data);
    eventi_shared::identity::parse(&line).unwrap()
}

fn options(server_key: ServerKey) -> ClientOptions {
    ClientOptions {
        server_key,
        ..ClientOptions::default()
    }
}

#[tokio::test]
async fn a_pinned_session_reads_and_writes_and_a_wrong_pin_moves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = new_key();
    keys_cli(&data, &["add", "me", &public_line(&key), "--quota", "1GiB"]);
    let server = Server::start_strict(&data, &[]);
    let id = identity(&server);

    // Pinned, with the write key inside: writes and reads as plain venti.
    let c = VentiClient::connect_with(
        server.addr,
        ClientOptions {
            write_key: Some(key.clone()),
            ..options(ServerKey::Pinned(id))
        },
    )
    .await
    .unwrap();
    let proved = c.encrypted().expect("an encrypted session");
    assert_eq!(proved.server_key, id);
    let block = Bytes::from(vec![7u8; 20_000]);
    let score = c.write(BlockType::DATA, block.clone()).await.unwrap();
    c.sync().await.unwrap();
    assert_eq!(c.read(score, BlockType::DATA, 65536).await.unwrap(), block);

    // A first contact learns the same identity.
    let learned = VentiClient::connect_with(server.addr, options(ServerKey::Learn))
        .await
        .unwrap();
    assert_eq!(learned.encrypted().unwrap().server_key, id);
    assert_ne!(
        learned.encrypted().unwrap().handshake_hash,
        proved.handshake_hash,
        "every session has its own keys"
    );
    // Plain venti on the same port still works.
    let plain = VentiClient::connect(server.addr).await.unwrap();
    assert!(plain.encrypted().is_none());
    assert_eq!(
        plain.read(score, BlockType::DATA, 65536).await.unwrap(),
        block
    );

    // Another pinned key: refused with both fingerprints, before any
    // request, and the write key never reaches the server.
    let stored_before = server.metric("eventi_stored_blocks");
    assert!(stored_before >= 1.0, "the block written is counted");
    let wrong = [5u8; 32];
    let e = VentiClient::connect_with(
        server.addr,
        ClientOptions {
            write_key: Some(key),
            ..options(ServerKey::Pinned(wrong))
        },
    )
    .await
    .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ClientError::Session(_)), "{text}");
    assert!(
        text.contains(&eventi_shared::identity::fingerprint(&id)),
        "{text}"
    );
    assert!(
        text.contains(&eventi_shared::identity::fingerprint(&wrong)),
        "{text}"
    );
    assert_eq!(server.metric("eventi_stored_blocks"), stored_before);
}

/// A loopback proxy to `to` that passes bytes through, flipping the byte
/// at `flip` (counted from the first byte the client sends) if given, and
/// recording what the client sent.
async fn proxy(
    to: std::net::SocketAddr,
    flip: Option<usize>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = tokio::net::TcpStream::connect(to).await.unwrap();
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let back = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut sr, &mut cw).await;
        });
        let mut seen = Vec::new();
        let mut chunk = vec![0u8; 65536];
        loop {
            let n = match cr.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let start = seen.len();
            seen.extend_from_slice(&chunk[..n]);
            if let Some(at) = flip {
                if (start..start + n).contains(&at) {
                    chunk[at - start] ^= 0x20;
                }
            }
            if sw.write_all(&chunk[..n]).await.is_err() {
                break;
            }
        }
        drop(sw);
        back.abort();
        seen
    });
    (addr, task)
}

#[tokio::test]
async fn a_changed_byte_breaks_the_session_and_a_replay_gets_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = new_key();
    keys_cli(&data, &["add", "me", &public_line(&key), "--quota", "1GiB"]);
    let server = Server::start_strict(&data, &[]);
    let id = identity(&server);
    let pinned = || ClientOptions {
        write_key: Some(key.clone()),
        ..options(ServerKey::Pinned(id))
    };
    let block = Bytes::from(vec![3u8; 30_000]);
    let score = Score::of(&block);

    // A clean pass through the proxy, recorded.
    let (addr, recorder) = proxy(server.addr, None).await;
    let c = VentiClient::connect_with(addr, pinned()).await.unwrap();
    c.write(BlockType::DATA, block.clone()).await.unwrap();
    c.sync().await.unwrap();
    drop(c);
    let recorded = recorder.await.unwrap();
    assert!(
        !recorded.windows(64).any(|w| w == &block[..64]),
        "the block crossed the wire in clear"
    );
    let stored = server.metric("eventi_stored_blocks");
    assert!(stored >= 1.0, "the block written is counted");

    // One byte changed well inside the block's frame: the server drops
    // the session, nothing is stored, and the client says why.
    let other = Bytes::from(vec![4u8; 30_000]);
    let (addr, _) = proxy(server.addr, Some(recorded.len() / 2)).await;
    let c = VentiClient::connect_with(addr, pinned()).await.unwrap();
    let e = c.write(BlockType::DATA, other.clone()).await.unwrap_err();
    assert!(
        matches!(e, ClientError::Disconnected | ClientError::Tampered),
        "{e}"
    );
    assert_eq!(server.metric("eventi_stored_blocks"), stored);
    let plain = VentiClient::connect(server.addr).await.unwrap();
    assert!(plain
        .read(Score::of(&other), BlockType::DATA, 65536)
        .await
        .is_err());
    assert_eq!(
        plain.read(score, BlockType::DATA, 65536).await.unwrap(),
        block
    );

    // The recorded client bytes replayed to the server: a new session
    // has new keys, so the server refuses them and stores nothing.
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(&recorded).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        s.read_to_end(&mut answer),
    )
    .await;
    assert_eq!(server.metric("eventi_stored_blocks"), stored);
    assert!(
        server.log().contains("failed") || server.log().contains("handshake"),
        "the server says why it dropped the replay"
    );
}

#[tokio::test]
async fn a_relay_to_another_server_fails_the_write_key_authentication() {
    use eventi_shared::session;
    let dir = tempfile::tempdir().unwrap();
    let key = new_key();
    let data = dir.path().join("data");
    keys_cli(&data, &["add", "me", &public_line(&key), "--quota", "1GiB"]);
    let server = Server::start_strict(&data, &[]);
    let target = server.addr;

    // The relay ends the client's encrypted session with an identity of
    // its own (a client that trusts on first use takes it), opens its own
    // to the real server, and passes the plaintext through both ways.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (c, _) = listener.accept().await.unwrap();
        let (crd, mut cwr) = c.into_split();
        let line = b"venti-02:04-eventi\n";
        cwr.write_all(line).await.unwrap();
        let mut crd = crd;
        let mut buf = bytes::BytesMut::new();
        while buf.len() < session::MARKER.len() {
            crd.read_buf(&mut buf).await.unwrap();
        }
        let _ = buf.split_to(session::MARKER.len());
        let to_client =
            session::server(crd, cwr, buf, line, &[42; 32], session::Cipher::ChaChaPoly)
                .await
                .unwrap();
        let s = tokio::net::TcpStream::connect(target).await.unwrap();
        let (mut srd, swr) = s.into_split();
        let mut sbuf = bytes::BytesMut::new();
        let server_line = loop {
            srd.read_buf(&mut sbuf).await.unwrap();
            if let Some(nl) = sbuf.iter().position(|&b| b == b'\n') {
                break sbuf.split_to(nl + 1).to_vec();
            }
        };
        let to_server = session::client(srd, swr, sbuf, &server_line, None)
            .await
            .unwrap();
        let (mut a_rd, mut a_wr) = (to_client.reader, to_client.writer);
        let (mut b_rd, mut b_wr) = (to_server.reader, to_server.writer);
        let up = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut a_rd, &mut b_wr).await;
        });
        let _ = tokio::io::copy(&mut b_rd, &mut a_wr).await;
        up.abort();
    });
    let e = VentiClient::connect_with(
        relay_addr,
        ClientOptions {
            write_key: Some(key),
            ..options(ServerKey::Learn)
        },
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains("signature does not match"),
        "the server refuses a signature bound to another session: {e}"
    );
}

#[tokio::test]
async fn what_the_operator_requires_encrypted_is_refused_in_clear_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key();
    let block = Bytes::from(vec![5u8; 4096]);
    let anonymous = |server_key| ClientOptions {
        server_key,
        ..ClientOptions::default()
    };

    // The default: a write key authenticates only in an encrypted session.
    let data = dir.path().join("default");
    keys_cli(&data, &["add", "me", &public_line(&key), "--quota", "1GiB"]);
    let server = Server::start(&data, &[]);
    let plain_keyed = ClientOptions {
        write_key: Some(key.clone()),
        ..ClientOptions::default()
    };
    let e = VentiClient::connect_with(server.addr, plain_keyed)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("write keys only in an encrypted session"),
        "{e}"
    );
    let keyed = ClientOptions {
        write_key: Some(key.clone()),
        ..options(ServerKey::Learn)
    };
    VentiClient::connect_with(server.addr, keyed).await.unwrap();
    // Anonymous writers (plan9port's tools, given a quota) still write in clear.
    let plain = VentiClient::connect_with(server.addr, anonymous(ServerKey::Plain))
        .await
        .unwrap();
    let score = plain.write(BlockType::DATA, block.clone()).await.unwrap();
    // Durable before the server stops (on s3, an unsynced write is not).
    plain.sync().await.unwrap();
    drop(server);

    // `writes`: no write in clear; reads go on.
    let server = Server::start(&data, &["--require-encryption", "writes"]);
    let plain = VentiClient::connect_with(server.addr, anonymous(ServerKey::Plain))
        .await
        .unwrap();
    let e = plain
        .write(BlockType::DATA, Bytes::from_static(b"new"))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("writes only in an encrypted session"),
        "{e}"
    );
    assert_eq!(
        plain.read(score, BlockType::DATA, 65536).await.unwrap(),
        block
    );
    let encrypted = VentiClient::connect_with(server.addr, anonymous(ServerKey::Learn))
        .await
        .unwrap();
    encrypted
        .write(BlockType::DATA, Bytes::from_static(b"new"))
        .await
        .unwrap();
    drop(server);

    // `reads`: no read in clear.
    let server = Server::start(&data, &["--require-encryption", "reads"]);
    let plain = VentiClient::connect_with(server.addr, anonymous(ServerKey::Plain))
        .await
        .unwrap();
    let e = plain.read(score, BlockType::DATA, 65536).await.unwrap_err();
    assert!(
        e.to_string().contains("reads only in an encrypted session"),
        "{e}"
    );
    let encrypted = VentiClient::connect_with(server.addr, anonymous(ServerKey::Learn))
        .await
        .unwrap();
    assert_eq!(
        encrypted.read(score, BlockType::DATA, 65536).await.unwrap(),
        block
    );
}
