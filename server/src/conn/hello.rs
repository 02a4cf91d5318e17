//! The start of every connection: version lines both ways (or, when the
//! client writes the encrypted session's marker instead of its line, the
//! Noise handshake, then the version lines inside it), then Thello,
//! answered with an Rhello whose sid carries the write-key challenge.

use std::time::Instant;

use bytes::BytesMut;
use eventi_shared::codec::{decode_body, encode_frame, Frame, FrameDecoder};
use eventi_shared::session;
use eventi_shared::version::{self, Version};
use eventi_shared::{auth, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{rerror, ConnError, Reader, Writer};
use crate::metrics::Kind;
use crate::state::Shared;

/// What the start of a session settled.
pub(super) struct Hello {
    /// The protocol version.
    pub version: Version,
    /// The uid the client gave.
    pub uid: String,
    /// The handshake hash of an encrypted session; `None` in plain venti.
    pub encrypted: Option<[u8; session::HASH_LEN]>,
}

/// Exchanges version lines (switching `rd` and `wr` to an encrypted
/// session's if the client asks for one) and answers Thello.
pub(super) async fn hello(
    rd: &mut Reader,
    wr: &mut Writer,
    buf: &mut BytesMut,
    shared: &Shared,
    challenge: &[u8; auth::CHALLENGE_LEN],
) -> Result<Hello, ConnError> {
    let ours = version::our_line(session::server_comment());
    wr.write_all(ours.as_bytes()).await?;
    let mut line = read_line(rd, buf).await?;
    let mut encrypted = None;
    if let Some(cipher) = session::Cipher::from_marker(&line) {
        let plain_rd = std::mem::replace(rd, Box::new(tokio::io::empty()));
        let plain_wr = std::mem::replace(wr, Box::new(tokio::io::sink()));
        let secret = shared.identity.secret_bytes();
        let s = session::server(
            plain_rd,
            plain_wr,
            buf.split(),
            ours.as_bytes(),
            &secret,
            cipher,
        )
        .await
        .map_err(|e| ConnError::Protocol(e.to_string()))?;
        *rd = s.reader;
        *wr = s.writer;
        encrypted = Some(s.handshake_hash);
        // Plain venti inside, from the version lines on.
        wr.write_all(ours.as_bytes()).await?;
        line = read_line(rd, buf).await?;
    }
    let version = version::negotiate(&line)?;
    let decoder = FrameDecoder::new(version, 64 * 1024);
    let body = loop {
        if let Some(body) = decoder.decode(buf)? {
            break body;
        }
        if rd.read_buf(buf).await? == 0 {
            return Err(ConnError::Protocol("peer closed before hello".into()));
        }
    };
    let started = Instant::now();
    let m = shared.metrics.kind(Kind::Hello);
    m.requests.inc();
    let mut out = BytesMut::new();
    match check_hello(decode_body(body), version) {
        Ok(uid) => {
            // Plain venti clients ignore the sid; eventi clients find the
            // challenge for write-key authentication in it.
            let rhello = Message::Rhello {
                sid: auth::challenge_sid(challenge),
                rcrypto: 0,
                rcodec: 0,
            };
            encode_frame(version, 0, &rhello, &mut out)?;
            wr.write_all(&out).await?;
            m.latency.observe(started.elapsed().as_secs_f64());
            Ok(Hello {
                version,
                uid,
                encrypted,
            })
        }
        Err(why) => {
            m.errors.inc();
            let _ = encode_frame(version, 0, &rerror(&why), &mut out);
            let _ = wr.write_all(&out).await;
            Err(ConnError::Protocol(why))
        }
    }
}

/// The next line (without its newline), read into `buf` from `rd`.
async fn read_line(rd: &mut Reader, buf: &mut BytesMut) -> Result<Vec<u8>, ConnError> {
    loop {
        if let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line = buf.split_to(nl + 1);
            return Ok(line[..nl].to_vec());
        }
        if buf.len() >= version::MAX_VERSION_LINE {
            return Err(version::VersionError::TooLong.into());
        }
        if rd.read_buf(buf).await? == 0 {
            return Err(ConnError::Protocol(
                "peer closed before its version line".into(),
            ));
        }
    }
}

/// The uid of a well-formed Thello for `version`, or why it is not one.
fn check_hello(
    frame: Result<Frame, eventi_shared::CodecError>,
    version: Version,
) -> Result<String, String> {
    match frame {
        Ok(Frame {
            tag: 0,
            message: Message::Thello {
                version: v, uid, ..
            },
        }) if v == version.as_str() => Ok(uid),
        Ok(Frame {
            tag: 0,
            message: Message::Thello { version: v, .. },
        }) => Err(format!(
            "bad version in hello: {v:?}, negotiated {}",
            version.as_str()
        )),
        Ok(Frame { tag: 0, message }) => Err(format!(
            "first message must be hello, got {}",
            message.name()
        )),
        Ok(Frame { tag, .. }) => Err(format!("bad tag {tag} in hello; must be 0")),
        Err(e) => Err(e.to_string()),
    }
}
