//! The venti protocol against the real server over loopback: pipelining,
//! idempotence, types, the zero score, limits, and every bad input.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use eventi_shared::client::ClientOptions;
use eventi_shared::codec::{decode_body, encode_frame, FrameDecoder};
use eventi_shared::{BlockType, ClientError, Message, Score, VentiClient, Version};
use eventi_tests::{config_file, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn start(dir: &tempfile::TempDir, config: Option<&str>) -> Server {
    let data = dir.path().join("data");
    match config {
        Some(toml) => {
            let cfg = config_file(dir.path(), toml);
            Server::start(&data, &["--config", cfg.to_str().unwrap()])
        }
        None => Server::start(&data, &[]),
    }
}

async fn client(server: &Server, offer: &str) -> VentiClient {
    let options = ClientOptions {
        offer: offer.into(),
        ..ClientOptions::default()
    };
    VentiClient::connect_with(server.addr, options)
        .await
        .expect("connect")
}

fn block(seed: u64, len: usize) -> Bytes {
    Bytes::from(eventi_tests::pattern(seed, len))
}

#[tokio::test]
async fn pipelined_write_read_sync_ping_in_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, None);
    for (offer, version) in [("04:02", Version::V04), ("02", Version::V02)] {
        let c = client(&server, offer).await;
        assert_eq!(c.version(), version);
        // An eventi server offers write-key authentication in the sid.
        let challenge = eventi_shared::auth::parse_challenge(c.sid());
        assert!(challenge.is_some(), "sid {:?}", c.sid());
        let again = client(&server, offer).await;
        assert_ne!(
            eventi_shared::auth::parse_challenge(again.sid()),
            challenge,
            "a fresh challenge per connection"
        );
        // 64 tasks keep 64 requests in flight on one connection.
        let mut tasks = Vec::new();
        for t in 0..64u64 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let mut written = Vec::new();
                for i in 0..16u64 {
                    let data = block(
                        t * 1000 + i + (version == Version::V02) as u64 * 1_000_000,
                        1000 + (i as usize * 517),
                    );
                    let score = c.write(BlockType::DATA, data.clone()).await.unwrap();
                    assert_eq!(score, Score::of(&data));
                    written.push((score, data));
                }
                c.ping().await.unwrap();
                written
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        c.sync().await.unwrap();
        let mut reads = Vec::new();
        for (score, data) in all {
            let c = c.clone();
            reads.push(tokio::spawn(async move {
                assert_eq!(
                    c.read(score, BlockType::DATA, 56 * 1024).await.unwrap(),
                    data
                );
            }));
        }
        for r in reads {
            r.await.unwrap();
        }
    }
    assert_eq!(server.metric("eventi_stored_blocks"), 2.0 * 64.0 * 16.0);
}

#[tokio::test]
async fn writes_are_idempotent_and_keyed_on_type() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, None);
    let c = client(&server, "04:02").await;
    let data = block(7, 4096);
    let s1 = c.write(BlockType::DATA, data.clone()).await.unwrap();
    let s2 = c.write(BlockType::DATA, data.clone()).await.unwrap();
    assert_eq!(s1, s2);
    assert_eq!(server.metric("eventi_stored_blocks"), 1.0);
    assert_eq!(server.metric("eventi_stored_bytes"), 4096.0);
    assert_eq!(server.metric("eventi_writes_duplicate_blocks_total"), 1.0);

    // Same bytes, other type: a different block, and reads must match type.
    let err = c.read(s1, BlockType::ROOT, 8192).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Server(m) if m.contains("no block")),
        "{err}"
    );
    c.write(BlockType::ROOT, data.clone()).await.unwrap();
    assert_eq!(c.read(s1, BlockType::ROOT, 8192).await.unwrap(), data);
    assert_eq!(server.metric("eventi_stored_blocks"), 2.0);
}

#[tokio::test]
async fn zero_score_small_count_and_size_limits() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, None);
    for offer in ["04", "02"] {
        let c = client(&server, offer).await;
        // The zero score is the empty block of any type, even with count 0.
        for t in [
            BlockType::DATA,
            BlockType::ROOT,
            BlockType::pointer(3).unwrap(),
        ] {
            let r = c
                .rpc(Message::Tread {
                    score: Score::ZERO,
                    block_type: t,
                    count: 0,
                })
                .await
                .unwrap();
            assert_eq!(r, Message::Rread { data: Bytes::new() });
        }
        // An empty write returns the zero score.
        assert_eq!(
            c.write(BlockType::DATA, Bytes::new()).await.unwrap(),
            Score::ZERO
        );

        let data = block(offer.len() as u64, 5000);
        let score = c.write(BlockType::DATA, data.clone()).await.unwrap();
        let err = c.read(score, BlockType::DATA, 4999).await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Server(m) if m.contains("read too small")),
            "{err}"
        );
        assert_eq!(c.read(score, BlockType::DATA, 5000).await.unwrap(), data);

        // 56 KiB is the largest block for 02; 04 allows 1 MiB by default.
        let max = block(99, 56 * 1024);
        c.write(BlockType::DATA, max).await.unwrap();
        let over = block(100, 56 * 1024 + 1);
        let r = c.write(BlockType::DATA, over.clone()).await;
        if offer == "02" {
            let err = r.unwrap_err();
            assert!(
                matches!(&err, ClientError::Server(m) if m.contains("block too large")),
                "{err}"
            );
        } else {
            let s = r.unwrap();
            let back = c.read(s, BlockType::DATA, 1 << 20).await.unwrap();
            assert!(back == over, "1 MiB block read back different");
            let huge = block(101, (1 << 20) + 1);
            let err = c.write(BlockType::DATA, huge).await.unwrap_err();
            assert!(
                matches!(&err, ClientError::Server(m) if m.contains("block too large")),
                "{err}"
            );
        }
        // The connection goes on after every refusal.
        c.ping().await.unwrap();
    }
}

/// A raw session for sending bytes no well-behaved client would.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    version: Version,
}

impl Raw {
    async fn connect(server: &Server) -> Raw {
        Raw::connect_as(server, Version::V02).await
    }

    /// Offers only `version`, so the session uses it.
    async fn connect_as(server: &Server, version: Version) -> Raw {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let line = format!("venti-{}-rawtest\n", version.as_str());
        stream.write_all(line.as_bytes()).await.unwrap();
        let mut raw = Raw {
            stream,
            buf: BytesMut::new(),
            version,
        };
        assert_eq!(
            raw.line().await,
            format!("venti-04:02-{}", eventi_shared::session::server_comment())
        );
        raw
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let l = self.buf.split_to(nl + 1);
                return String::from_utf8_lossy(&l[..nl]).into_owned();
            }
            assert!(
                self.stream.read_buf(&mut self.buf).await.unwrap() > 0,
                "closed before a line"
            );
        }
    }

    async fn hello(server: &Server) -> Raw {
        Raw::hello_as(server, Version::V02).await
    }

    async fn hello_as(server: &Server, version: Version) -> Raw {
        let mut raw = Raw::connect_as(server, version).await;
        raw.send(0, &hello_msg(version.as_str())).await;
        assert!(matches!(
            raw.recv().await,
            Some((0, Message::Rhello { .. }))
        ));
        raw
    }

    async fn send(&mut self, tag: u8, m: &Message) {
        let mut out = BytesMut::new();
        encode_frame(self.version, tag, m, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    async fn send_body(&mut self, body: &[u8]) {
        let mut out = (body.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next reply, or None once the server has closed the connection.
    async fn recv(&mut self) -> Option<(u8, Message)> {
        let dec = FrameDecoder::new(self.version, 1 << 20);
        loop {
            if let Some(body) = dec.decode(&mut self.buf).unwrap() {
                let f = decode_body(body).unwrap();
                return Some((f.tag, f.message));
            }
            let read =
                tokio::time::timeout(Duration::from_secs(20), self.stream.read_buf(&mut self.buf));
            match read.await.expect("server neither replied nor closed") {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

fn hello_msg(version: &str) -> Message {
    Message::Thello {
        version: version.into(),
        uid: "raw".into(),
        strength: 0,
        crypto: Bytes::new(),
        codec: Bytes::new(),
    }
}

fn error_of(reply: Option<(u8, Message)>, tag: u8) -> String {
    match reply {
        Some((t, Message::Rerror { error })) if t == tag => error,
        other => panic!("expected Rerror with tag {tag}, got {other:?}"),
    }
}

async fn still_serving(server: &Server) {
    let c = client(server, "04:02").await;
    c.ping().await.expect("server still serves new connections");
}

#[tokio::test]
async fn malformed_and_unknown_messages_get_rerror_and_the_session_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, None);
    let mut raw = Raw::hello(&server).await;

    raw.send_body(&[12, 5, 1, 2, 3]).await; // Tread far too short
    assert!(error_of(raw.recv().await, 5).contains("bad read"));
    let mut bad_type = vec![12, 6];
    bad_type.extend_from_slice(&[0xaa; 20]);
    bad_type.extend_from_slice(&[10, 0, 0x20, 0]); // type 10 is illegal
    raw.send_body(&bad_type).await;
    assert!(error_of(raw.recv().await, 6).contains("bad block type"));
    raw.send_body(&[99, 7]).await; // unknown message type
    assert_eq!(error_of(raw.recv().await, 7), "unknown request");
    raw.send_body(&[3, 8]).await; // an R-message sent as a request
    assert!(error_of(raw.recv().await, 8).contains("unknown request"));
    raw.send(9, &hello_msg("02")).await; // second hello
    assert!(error_of(raw.recv().await, 9).contains("hello already done"));
    raw.send(10, &Message::Tping).await;
    assert_eq!(raw.recv().await, Some((10, Message::Rping)));

    // Tgoodbye: the server closes without a reply.
    raw.send(11, &Message::Tgoodbye).await;
    assert_eq!(raw.recv().await, None);
    still_serving(&server).await;
}

#[tokio::test]
async fn bad_handshakes_close_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, None);

    // A bad version line: closed without a session.
    for line in [&b"hello-04\n"[..], b"venti-99:05-x\n", b"venti-04\x01\n"] {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(line).await.unwrap();
        let mut all = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all))
            .await
            .expect("closed promptly")
            .ok();
        assert_eq!(
            all,
            eventi_shared::version::our_line(eventi_shared::session::server_comment()).as_bytes(),
            "only our version line, then close"
        );
    }
    // An endless version line.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let _ = s.write_all(&[b'v'; 4096]).await;
    let mut all = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all))
        .await
        .expect("closed");

    // Hello with the wrong version, hello with a non-zero tag, no hello.
    for (tag, m, expect) in [
        (0, hello_msg("04"), "bad version in hello"),
        (3, hello_msg("02"), "bad tag"),
        (0, Message::Tping, "first message must be hello"),
    ] {
        let mut raw = Raw::connect(&server).await;
        raw.send(tag, &m).await;
        assert!(error_of(raw.recv().await, 0).contains(expect));
        assert_eq!(raw.recv().await, None);
    }
    still_serving(&server).await;
    assert!(server.metric("eventi_connections_dropped_total") >= 6.0);
}

#[tokio::test]
async fn oversized_frame_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, None);
    let other = client(&server, "04:02").await;

    let mut raw = Raw::hello_as(&server, Version::V04).await;
    // Announce a 1 GiB frame: refused before any of it is buffered.
    raw.stream
        .write_all(&(1u32 << 30).to_be_bytes())
        .await
        .unwrap();
    assert_eq!(raw.recv().await, None);

    other.ping().await.unwrap();
    server.wait_for_log("exceeds the limit");
}

#[tokio::test]
async fn idle_slow_and_silent_peers_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        &dir,
        Some(
            "[limits]\nidle_timeout_secs = 1\nhandshake_timeout_secs = 1\nframe_timeout_secs = 1\n",
        ),
    );
    // Silent after connecting: handshake timeout.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all))
        .await
        .expect("closed by the handshake timeout")
        .ok();
    // Idle after hello.
    let mut raw = Raw::hello(&server).await;
    assert_eq!(raw.recv().await, None, "closed by the idle timeout");
    // Half a frame, then nothing (slowloris).
    let mut raw = Raw::hello(&server).await;
    raw.stream.write_all(&[0, 40, 12]).await.unwrap();
    assert_eq!(raw.recv().await, None, "closed by the frame timeout");
    still_serving(&server).await;
    for what in [
        "version line and hello",
        "idle connection",
        "rest of a frame",
    ] {
        server.wait_for_log(what);
    }
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_dropped_and_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        &dir,
        Some("[limits]\nwrite_timeout_secs = 2\nmax_in_flight = 256\n"),
    );
    let c = client(&server, "04").await;
    let data = block(5, 1 << 20);
    let score = c.write(BlockType::DATA, data).await.unwrap();

    // Ask for 1 MiB replies without ever reading them.
    let mut raw = Raw::hello_as(&server, Version::V04).await;
    let mut out = BytesMut::new();
    for tag in 0..=255u8 {
        let m = Message::Tread {
            score,
            block_type: BlockType::DATA,
            count: 1 << 20,
        };
        encode_frame(Version::V04, tag, &m, &mut out).unwrap();
    }
    raw.stream.write_all(&out).await.unwrap();
    // Meanwhile another client is served normally.
    for _ in 0..20 {
        c.ping().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.wait_for_log("stopped reading replies");
    drop(raw);
    still_serving(&server).await;
}

/// A peer that resets its connection with requests in flight must cost
/// the server that connection only. The server is stopped while the
/// requests and then the reset arrive, so that when it goes on it reads
/// the requests, then the reset, and then writes the replies that the
/// commit sends back: those writes fail with EPIPE (with SIGPIPE at its
/// default the process would die of it, silently).
#[tokio::test]
async fn a_peer_that_resets_with_requests_in_flight_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, None);
    // Which of the reset and the replies the server sees first is up to
    // its scheduler: about one round in two goes the way that matters.
    for round in 0..20u64 {
        let mut raw = Raw::hello_as(&server, Version::V04).await;
        let mut out = BytesMut::new();
        for tag in 0..8u8 {
            let m = Message::Twrite {
                block_type: BlockType::DATA,
                data: block(1000 * round + tag as u64, 8 << 10),
            };
            encode_frame(Version::V04, tag, &m, &mut out).unwrap();
        }
        m_sync(&mut out);
        signal(&server, libc::SIGSTOP);
        // 64 KiB: taken by the kernel's buffers while the server is stopped.
        raw.stream.write_all(&out).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Close with no linger: the kernel sends RST.
        raw.stream.set_zero_linger().unwrap();
        drop(raw);
        tokio::time::sleep(Duration::from_millis(50)).await;
        signal(&server, libc::SIGCONT);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let alive = VentiClient::connect(server.addr).await;
        assert!(
            alive.is_ok(),
            "round {round}: server gone; log:\n{}",
            server.log()
        );
    }
    still_serving(&server).await;
}

fn signal(server: &Server, signal: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child this test started.
    assert_eq!(
        unsafe { libc::kill(server.pid() as libc::pid_t, signal) },
        0
    );
}

/// Appends a Tsync (tag 200) to `out`.
fn m_sync(out: &mut BytesMut) {
    encode_frame(Version::V04, 200, &Message::Tsync, out).unwrap();
}

#[tokio::test]
async fn connection_limit_refuses_extra_connections() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, Some("[limits]\nmax_connections = 2\n"));
    let a = client(&server, "04").await;
    let b = client(&server, "04").await;
    let third = tokio::time::timeout(Duration::from_secs(10), VentiClient::connect(server.addr))
        .await
        .expect("refused promptly");
    assert!(third.is_err(), "a third connection must be refused");
    a.ping().await.unwrap();
    b.ping().await.unwrap();
    assert_eq!(server.metric("eventi_connections_refused_total"), 1.0);
}

#[tokio::test]
async fn metrics_and_health_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, None);
    let c = client(&server, "04").await;
    c.write(BlockType::DATA, block(1, 100)).await.unwrap();
    c.ping().await.unwrap();
    let _ = c.read(Score::of(b"nothing"), BlockType::DATA, 100).await;
    assert_eq!(server.http_get("/healthz"), (200, "ok\n".to_string()));
    let (status, body) = server.http_get("/metrics");
    assert_eq!(status, 200);
    for needle in [
        "eventi_requests_total{type=\"write\"} 1",
        "eventi_requests_total{type=\"ping\"} 1",
        "eventi_request_errors_total{type=\"read\"} 1",
        "eventi_request_latency_seconds_bucket{",
        "eventi_connections_open 1",
        "eventi_stored_blocks 1",
        "eventi_received_bytes_total",
    ] {
        assert!(body.contains(needle), "missing {needle} in:\n{body}");
    }
}

#[tokio::test]
async fn flags_win_over_the_config_file_and_bad_configs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // The file names addresses; the harness's --listen/--http flags must win.
    let server = start(
        &dir,
        Some("listen = \"127.0.0.1:9\"\nhttp = \"127.0.0.1:9\"\n[limits]\nmax_in_flight = 8\n"),
    );
    assert_ne!(server.addr.port(), 9);
    assert_ne!(server.http.port(), 9);
    client(&server, "04").await.ping().await.unwrap();

    for (toml, complaint) in [
        ("[limits]\nmax_in_flight = 1000\n", "max_in_flight"),
        ("[storage]\nno_such_setting = 1\n", "no_such_setting"),
    ] {
        let cfg = config_file(dir.path(), toml);
        let out = std::process::Command::new(eventi_tests::binary("eventi-server"))
            .args(["serve", "--data"])
            .arg(dir.path().join("other"))
            .args(["--listen", "127.0.0.1:0", "--http", "off", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{toml} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(complaint), "{toml}: {stderr}");
    }
}
