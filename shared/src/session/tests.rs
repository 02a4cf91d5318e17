use super::pump::{decrypt_loop, frame, Inbound};
use super::*;
use tokio::io::AsyncReadExt;

/// A client and a server on a loopback socket pair, the server
/// writing `line` as its version line; returns both sessions (or the
/// client's error) and the server's key.
async fn pair_with(
    pinned: Option<[u8; 32]>,
    line: &'static [u8],
) -> (Result<Session, SessionError>, Option<Session>, [u8; 32]) {
    pair_seeing(pinned, line, line).await
}

/// [`pair_with`], the client seeing `seen` as the server's line (as a
/// man in the middle would rewrite it).
async fn pair_seeing(
    pinned: Option<[u8; 32]>,
    line: &'static [u8],
    seen: &'static [u8],
) -> (Result<Session, SessionError>, Option<Session>, [u8; 32]) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let secret = [9u8; 32];
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let (rd, mut wr) = s.into_split();
        wr.write_all(line).await.unwrap();
        let mut rd = rd;
        let mut buf = BytesMut::new();
        let marker = loop {
            if let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                break buf.split_to(nl + 1);
            }
            if rd.read_buf(&mut buf).await.unwrap() == 0 {
                return None;
            }
        };
        let cipher = Cipher::from_marker(&marker[..marker.len() - 1]).expect("a marker");
        server(rd, wr, buf, line, &secret, cipher).await.ok()
    });
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, wr) = s.into_split();
    let mut got = vec![0u8; line.len()];
    rd.read_exact(&mut got).await.unwrap();
    let got = if seen == line { got } else { seen.to_vec() };
    let client = client(rd, wr, BytesMut::new(), &got, pinned).await;
    let server = if client.is_ok() {
        server.await.unwrap()
    } else {
        server.abort();
        None
    };
    (client, server, x25519_public(&secret))
}

async fn pair(
    pinned: Option<[u8; 32]>,
) -> (Result<Session, SessionError>, Option<Session>, [u8; 32]) {
    pair_with(pinned, b"venti-02-eventi\n").await
}

#[tokio::test]
async fn aes_gcm_only_where_the_server_offers_it_and_this_cpu_has_aes() {
    let (c, s, _) = pair(None).await;
    assert_eq!(c.unwrap().cipher, Cipher::ChaChaPoly);
    assert_eq!(s.unwrap().cipher, Cipher::ChaChaPoly);
    let (c, s, _) = pair_with(None, b"venti-02:04-eventi-aes\n").await;
    let (mut c, mut s) = (c.unwrap(), s.unwrap());
    let want = if has_fast_aes() {
        Cipher::AesGcm
    } else {
        Cipher::ChaChaPoly
    };
    assert_eq!((c.cipher, s.cipher), (want, want));
    c.writer.write_all(b"through").await.unwrap();
    let mut got = [0u8; 7];
    s.reader.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"through");
    assert!(is_eventi_line(b"venti-02:04-eventi-aes\n"));
    assert!(is_eventi_line(b"venti-04:02-eventi"));
    assert!(!is_eventi_line(b"venti-02-libventi\n"));
    assert_eq!(
        Cipher::from_marker(b"eventi-noise-1-aes"),
        Some(Cipher::AesGcm)
    );
    assert_eq!(Cipher::from_marker(b"venti-02"), None);
}

#[tokio::test]
async fn an_offer_removed_in_transit_fails_the_handshake() {
    let (c, s, _) = pair_seeing(None, b"venti-02:04-eventi-aes\n", b"venti-02:04-eventi\n").await;
    assert!(
        matches!(c, Err(SessionError::Handshake(_))),
        "{:?}",
        c.err()
    );
    assert!(s.is_none());
}

#[tokio::test]
async fn both_ways_through_and_the_same_session_hash() {
    let (c, s, key) = pair(None).await;
    let (mut c, mut s) = (c.unwrap(), s.unwrap());
    assert_eq!(c.server_key, key);
    assert_eq!(c.handshake_hash, s.handshake_hash);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    c.writer.write_all(&big).await.unwrap();
    c.writer.flush().await.unwrap();
    let mut got = vec![0u8; big.len()];
    s.reader.read_exact(&mut got).await.unwrap();
    assert!(got == big);
    s.writer.write_all(b"reply").await.unwrap();
    let mut r = [0u8; 5];
    c.reader.read_exact(&mut r).await.unwrap();
    assert_eq!(&r, b"reply");
}

#[tokio::test]
async fn a_pinned_key_that_differs_is_refused_with_both_fingerprints() {
    let (c, _, key) = pair(Some([1; 32])).await;
    match c {
        Err(SessionError::WrongServer { expected, got }) => {
            assert_eq!(got, crate::identity::fingerprint(&key));
            assert_eq!(expected, crate::identity::fingerprint(&[1; 32]));
        }
        other => panic!("expected WrongServer, got {:?}", other.err()),
    }
    let (c, s, _) = pair(Some(key)).await;
    assert!(c.is_ok() && s.is_some());
}

#[tokio::test]
async fn a_changed_frame_fails_with_a_clear_error() {
    let (c, s, _) = pair(None).await;
    let (c, s) = (c.unwrap(), s.unwrap());
    // Feed the server's decrypting side a tampered frame directly: a
    // frame encrypted by the client's transport, one byte flipped.
    let transport = {
        // Re-run a handshake in memory to get matching transports.
        let secret = [9u8; 32];
        let mut i = builder(Cipher::ChaChaPoly).build_initiator().unwrap();
        let mut r = builder(Cipher::ChaChaPoly)
            .local_private_key(&secret)
            .build_responder()
            .unwrap();
        let (mut m, mut p) = (vec![0u8; 1024], vec![0u8; 1024]);
        let n = i.write_message(&[], &mut m).unwrap();
        r.read_message(&m[..n], &mut p).unwrap();
        let n = r.write_message(&[], &mut m).unwrap();
        i.read_message(&m[..n], &mut p).unwrap();
        (
            i.into_stateless_transport_mode().unwrap(),
            Arc::new(r.into_stateless_transport_mode().unwrap()),
        )
    };
    let mut ct = vec![0u8; 64];
    let n = transport.0.write_message(0, b"hello", &mut ct).unwrap();
    ct[3] ^= 1;
    let mut wire = frame(&ct[..n]);
    // A second, good frame behind it must not be delivered either.
    let n2 = transport.0.write_message(1, b"more", &mut ct).unwrap();
    wire.extend_from_slice(&frame(&ct[..n2]));
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(decrypt_loop(
        std::io::Cursor::new(wire),
        BytesMut::new(),
        Arc::clone(&transport.1),
        tx,
    ));
    let mut inbound = Inbound {
        rx,
        pending: Bytes::new(),
    };
    let mut got = Vec::new();
    let e = inbound.read_to_end(&mut got).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    assert!(e.to_string().contains("failed authentication"), "{e}");
    assert!(got.is_empty(), "nothing of a tampered session is delivered");
    drop((c, s));
}

#[test]
fn ring_and_the_portable_crates_make_the_same_bytes() {
    // A peer built without ring must interoperate: one side on the
    // default resolver, the other on ours, with either cipher.
    let secret = [9u8; 32];
    for cipher in [Cipher::ChaChaPoly, Cipher::AesGcm] {
        let portable = || snow::Builder::new(params(cipher));
        for ring_initiates in [true, false] {
            let (mut i, mut r) = if ring_initiates {
                (
                    builder(cipher).build_initiator().unwrap(),
                    portable()
                        .local_private_key(&secret)
                        .build_responder()
                        .unwrap(),
                )
            } else {
                (
                    portable().build_initiator().unwrap(),
                    builder(cipher)
                        .local_private_key(&secret)
                        .build_responder()
                        .unwrap(),
                )
            };
            let (mut m, mut p) = (vec![0u8; 1024], vec![0u8; 1024]);
            let n = i.write_message(&[], &mut m).unwrap();
            r.read_message(&m[..n], &mut p).unwrap();
            let n = r.write_message(&[], &mut m).unwrap();
            i.read_message(&m[..n], &mut p).unwrap();
            let (i, r) = (
                i.into_stateless_transport_mode().unwrap(),
                r.into_stateless_transport_mode().unwrap(),
            );
            let plain: Vec<u8> = (0..40_000u32).map(|x| x as u8).collect();
            let mut ct = vec![0u8; MAX_MESSAGE];
            let mut back = vec![0u8; MAX_MESSAGE];
            for nonce in 0..3 {
                let n = i.write_message(nonce, &plain, &mut ct).unwrap();
                let m = r.read_message(nonce, &ct[..n], &mut back).unwrap();
                assert!(back[..m] == plain[..]);
                let n = r.write_message(nonce, &plain, &mut ct).unwrap();
                let m = i.read_message(nonce, &ct[..n], &mut back).unwrap();
                assert!(back[..m] == plain[..]);
            }
        }
    }
}
