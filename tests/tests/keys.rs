//! Write keys and quotas against the real server and the real `keys` CLI.

use bytes::{Bytes, BytesMut};
use ed25519_dalek::SigningKey;
use eventi_shared::client::{ClientOptions, ServerKey};
use eventi_shared::codec::{decode_body, encode_frame, FrameDecoder};
use eventi_shared::{auth, BlockType, ClientError, Message, VentiClient, Version};
use eventi_tests::{keys_cli, new_key, pattern, public_line, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn keys(data: &std::path::Path, args: &[&str]) -> String {
    keys_cli(data, args)
}

/// (bytes, blocks) charged to `name`, from `keys list --json`.
fn usage(data: &std::path::Path, name: &str) -> (u64, u64) {
    let list: serde_json::Value = serde_json::from_str(&keys(data, &["list", "--json"])).unwrap();
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"]["name"] == name)
        .unwrap_or_else(|| panic!("no key {name} in {list}"));
    (
        entry["used_bytes"].as_u64().unwrap(),
        entry["used_blocks"].as_u64().unwrap(),
    )
}

async fn as_key(server: &Server, key: &SigningKey) -> Result<VentiClient, ClientError> {
    let options = ClientOptions {
        write_key: Some(key.clone()),
        uid: "tester".into(),
        server_key: ServerKey::Learn,
        ..ClientOptions::default()
    };
    VentiClient::connect_with(server.addr, options).await
}

fn server_error(r: Result<impl std::fmt::Debug, ClientError>) -> String {
    match r {
        Err(ClientError::Server(m)) => m,
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test]
async fn anonymous_reads_keys_write_removed_keys_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let alice = new_key();
    keys(
        &data,
        &["add", "alice", &public_line(&alice), "--quota", "10MiB"],
    );
    let server = Server::start_strict(&data, &[]);

    let anon = VentiClient::connect(server.addr).await.unwrap();
    let refused = server_error(
        anon.write(BlockType::DATA, Bytes::from_static(b"junk"))
            .await,
    );
    assert_eq!(refused, "write needs an authorized key");

    let a = as_key(&server, &alice).await.unwrap();
    let data1 = Bytes::from(pattern(1, 5000));
    let score = a.write(BlockType::DATA, data1.clone()).await.unwrap();
    a.sync().await.unwrap();
    // Anyone who knows the score may read it.
    assert!(anon.read(score, BlockType::DATA, 8192).await.unwrap() == data1);

    // Removed while the server runs: the open session can no longer write,
    // and the key no longer authenticates.
    let out = keys(&data, &["remove", "alice"]);
    assert!(out.contains("removed: alice"), "{out}");
    let err = server_error(a.write(BlockType::DATA, Bytes::from(pattern(2, 100))).await);
    assert!(err.contains("no longer authorized"), "{err}");
    let err = server_error(as_key(&server, &alice).await);
    assert!(err.contains("not authorized"), "{err}");
    assert!(server.metric("eventi_refused_writes_total") >= 0.0);
}

#[tokio::test]
async fn quota_is_exact_and_duplicates_are_free() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bob = new_key();
    keys(
        &data,
        &["add", "bob", &public_line(&bob), "--quota", "1MiB"],
    );
    let server = Server::start_strict(&data, &[]);
    let b = as_key(&server, &bob).await.unwrap();

    // 128 blocks of 8 KiB fill 1 MiB exactly; the 129th is refused.
    let mut stored = Vec::new();
    for i in 0..128u64 {
        let block = Bytes::from(pattern(100 + i, 8192));
        b.write(BlockType::DATA, block.clone()).await.unwrap();
        stored.push(block);
    }
    let err = server_error(
        b.write(BlockType::DATA, Bytes::from(pattern(999, 8192)))
            .await,
    );
    assert_eq!(err, "quota exceeded");
    // A duplicate of a stored block is accepted and charges nothing.
    b.write(BlockType::DATA, stored[7].clone()).await.unwrap();
    b.sync().await.unwrap();
    assert_eq!(usage(&data, "bob"), (1 << 20, 128));
    // The last write as a person reads it (seconds stay in --json).
    let table = keys(&data, &["list"]);
    let year = eventi_shared::time::format_utc(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    )[..4]
        .to_string();
    let row = table.lines().find(|l| l.starts_with("bob")).unwrap();
    assert!(
        row.ends_with(" UTC") && row.contains(&format!(" {year}-")),
        "{table}"
    );
    assert!(!table.contains("(unix)"), "{table}");

    // Raising the quota on the running server takes effect at once.
    keys(&data, &["set-quota", "bob", "2MiB"]);
    b.write(BlockType::DATA, Bytes::from(pattern(999, 8192)))
        .await
        .unwrap();
    b.sync().await.unwrap();
    assert_eq!(usage(&data, "bob"), ((1 << 20) + 8192, 129));

    // Usage survives a crash and agrees with what is stored.
    server.kill9();
    let server = Server::start_strict(&data, &[]);
    let b = as_key(&server, &bob).await.unwrap();
    for block in &stored {
        b.read(eventi_shared::Score::of(block), BlockType::DATA, 8192)
            .await
            .unwrap();
    }
    drop(b);
    assert!(server.terminate().success());
    assert_eq!(usage(&data, "bob"), ((1 << 20) + 8192, 129));
}

/// A raw session that does hello and returns the challenge, for sending
/// hand-made Tauth0 messages.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    challenge: [u8; 32],
}

impl Raw {
    async fn hello(server: &Server, uid: &str) -> Raw {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(b"venti-04-raw\n").await.unwrap();
        let mut raw = Raw {
            stream,
            buf: BytesMut::new(),
            challenge: [0; 32],
        };
        loop {
            if let Some(nl) = raw.buf.iter().position(|&b| b == b'\n') {
                let _ = raw.buf.split_to(nl + 1);
                break;
            }
            raw.stream.read_buf(&mut raw.buf).await.unwrap();
        }
        raw.send(
            0,
            &Message::Thello {
                version: "04".into(),
                uid: uid.into(),
                strength: 0,
                crypto: Bytes::new(),
                codec: Bytes::new(),
            },
        )
        .await;
        match raw.recv().await {
            Some(Message::Rhello { sid, .. }) => {
                raw.challenge = auth::parse_challenge(&sid).unwrap()
            }
            other => panic!("{other:?}"),
        }
        raw
    }

    /// Sends Tauth0 with `key` and `signature`; returns the reply.
    async fn auth(&mut self, tag: u8, key: [u8; 32], signature: [u8; 64]) -> Option<Message> {
        self.send(tag, &Message::Tauth0 { key, signature }).await;
        self.recv().await
    }

    async fn send(&mut self, tag: u8, m: &Message) {
        let mut out = BytesMut::new();
        encode_frame(Version::V04, tag, m, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    async fn recv(&mut self) -> Option<Message> {
        let dec = FrameDecoder::new(Version::V04, 1 << 20);
        loop {
            if let Some(body) = dec.decode(&mut self.buf).unwrap() {
                return Some(decode_body(body).unwrap().message);
            }
            if self.stream.read_buf(&mut self.buf).await.unwrap_or(0) == 0 {
                return None;
            }
        }
    }
}

fn rerror(m: Option<Message>) -> String {
    match m {
        Some(Message::Rerror { error }) => error,
        other => panic!("expected Rerror, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_authentication_is_refused_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let carol = new_key();
    keys(
        &data,
        &["add", "carol", &public_line(&carol), "--quota", "1MiB"],
    );
    // Hand-made Tauth0 frames travel in clear: let plain sessions
    // authenticate (the default refuses them; tested in encrypted.rs).
    let server = Server::start_strict(&data, &["--require-encryption", "none"]);
    let public = carol.verifying_key().to_bytes();

    // A wrong signature.
    let mut raw = Raw::hello(&server, "carol").await;
    let (_, mut sig) = auth::sign(&carol, &raw.challenge, "04", "carol", None);
    sig[0] ^= 1;
    assert!(rerror(raw.auth(1, public, sig).await).contains("authentication failed"));

    // A transcript replayed from another connection (another challenge).
    let first = Raw::hello(&server, "carol").await;
    let (_, replayed) = auth::sign(&carol, &first.challenge, "04", "carol", None);
    let mut second = Raw::hello(&server, "carol").await;
    assert!(rerror(second.auth(1, public, replayed).await).contains("authentication failed"));

    // Signed for another uid than the session's.
    let mut raw = Raw::hello(&server, "carol").await;
    let (_, sig) = auth::sign(&carol, &raw.challenge, "04", "mallory", None);
    assert!(rerror(raw.auth(1, public, sig).await).contains("authentication failed"));

    // A valid signature by a key the server does not know.
    let stranger = new_key();
    let mut raw = Raw::hello(&server, "x").await;
    let (k, sig) = auth::sign(&stranger, &raw.challenge, "04", "x", None);
    assert!(rerror(raw.auth(1, k, sig).await).contains("not authorized"));

    // Right, then twice.
    let mut raw = Raw::hello(&server, "carol").await;
    let (k, sig) = auth::sign(&carol, &raw.challenge, "04", "carol", None);
    assert_eq!(raw.auth(1, k, sig).await, Some(Message::Rauth0));
    assert!(rerror(raw.auth(2, k, sig).await).contains("already authenticated"));
    raw.send(
        3,
        &Message::Twrite {
            block_type: BlockType::DATA,
            data: Bytes::from_static(b"ok"),
        },
    )
    .await;
    assert!(matches!(raw.recv().await, Some(Message::Rwrite { .. })));

    // Auth before hello: the first message must be hello.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"venti-04-raw\n").await.unwrap();
    let mut out = BytesMut::new();
    encode_frame(
        Version::V04,
        0,
        &Message::Tauth0 {
            key: k,
            signature: sig,
        },
        &mut out,
    )
    .unwrap();
    s.write_all(&out).await.unwrap();
    let mut all = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut all)).await;
    assert!(String::from_utf8_lossy(&all).contains("first message must be hello"));

    // The server goes on, and counted the failures.
    as_key(&server, &carol).await.unwrap().ping().await.unwrap();
    let (_, metrics) = server.http_get("/metrics");
    for reason in ["bad signature", "unknown key", "twice"] {
        assert!(
            metrics.contains(&format!(
                "eventi_auth_failures_total{{reason=\"{reason}\"}}"
            )),
            "{reason}: {metrics}"
        );
    }
}

#[tokio::test]
async fn per_address_connection_limit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = eventi_tests::config_file(dir.path(), "[limits]\nmax_connections_per_address = 2\n");
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    );
    let a = VentiClient::connect(server.addr).await.unwrap();
    let b = VentiClient::connect(server.addr).await.unwrap();
    assert!(VentiClient::connect(server.addr).await.is_err());
    a.ping().await.unwrap();
    drop(b);
    // The slot is given back when a connection closes.
    let mut ok = false;
    for _ in 0..50 {
        if let Ok(c) = VentiClient::connect(server.addr).await {
            ok = c.ping().await.is_ok();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "a freed slot must be reusable");
}

#[tokio::test]
async fn anonymous_reads_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let dave = new_key();
    keys(
        &data,
        &["add", "dave", &public_line(&dave), "--quota", "1MiB"],
    );
    let cfg = eventi_tests::config_file(dir.path(), "[auth]\nanonymous_reads = false\n");
    let server = Server::start_strict(&data, &["--config", cfg.to_str().unwrap()]);
    let d = as_key(&server, &dave).await.unwrap();
    let block = Bytes::from(pattern(5, 1000));
    let score = d.write(BlockType::DATA, block.clone()).await.unwrap();
    assert!(d.read(score, BlockType::DATA, 1000).await.unwrap() == block);
    let anon = VentiClient::connect(server.addr).await.unwrap();
    let err = server_error(anon.read(score, BlockType::DATA, 1000).await);
    assert_eq!(err, "read needs an authorized key");
    anon.ping().await.unwrap();
}

/// eventi's presence query and key info against the real server: which
/// blocks are stored (many per request, more than one request's worth),
/// and the key's quota and usage; an anonymous session is told it is one.
#[tokio::test]
async fn presence_queries_and_key_info_answer_without_reading_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let alice = new_key();
    keys(
        &data,
        &["add", "alice", &public_line(&alice), "--quota", "10MiB"],
    );
    let server = Server::start_strict(&data, &[]);
    let client = as_key(&server, &alice).await.unwrap();
    assert!(client.speaks_eventi());
    let mut keys_asked = Vec::new();
    for i in 0..1500u64 {
        let data = Bytes::from(pattern(i, 100));
        let score = eventi_shared::Score::of(&data);
        if i % 3 == 0 {
            client.write(BlockType::DATA, data).await.unwrap();
        }
        keys_asked.push((score, BlockType::DATA));
    }
    // The same bytes under another type are another block.
    keys_asked.push((keys_asked[0].0, BlockType::ROOT));
    client.sync().await.unwrap();
    let present = client.has(&keys_asked).await.unwrap();
    assert_eq!(present.len(), keys_asked.len());
    for (i, p) in present.iter().enumerate().take(1500) {
        assert_eq!(*p, i % 3 == 0, "block {i}");
    }
    assert!(!present[1500], "type is part of the key");

    let info = client.keyinfo().await.unwrap();
    assert_eq!(info.name, "alice");
    assert_eq!(info.quota, 10 << 20);
    assert_eq!((info.used, info.blocks), (500 * 100, 500));
    let anon = VentiClient::connect(server.addr).await.unwrap();
    let info = anon.keyinfo().await.unwrap();
    assert_eq!((info.name.as_str(), info.quota), ("anonymous", 0));
    // Two presence requests and two key infos, and no read at all.
    assert_eq!(server.metric("eventi_requests_total{type=\"query\"}"), 4.0);
    assert_eq!(server.metric("eventi_requests_total{type=\"read\"}"), 0.0);
}
