//! The start of every connection: version lines both ways, then Thello,
//! answered with an Rhello whose sid carries the write-key challenge.

use std::time::Instant;

use bytes::BytesMut;
use eventi_shared::codec::{decode_body, encode_frame, Frame, FrameDecoder};
use eventi_shared::version::{self, Version};
use eventi_shared::{auth, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::{rerror, ConnError};
use crate::metrics::Kind;
use crate::state::Shared;

/// Exchanges version lines and answers Thello. Returns the version and uid.
pub(super) async fn hello(
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    buf: &mut BytesMut,
    shared: &Shared,
    challenge: &[u8; auth::CHALLENGE_LEN],
) -> Result<(Version, String), ConnError> {
    wr.write_all(version::our_line("eventi").as_bytes()).await?;
    let line = loop {
        if let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line = buf.split_to(nl + 1);
            break line[..nl].to_vec();
        }
        if buf.len() >= version::MAX_VERSION_LINE {
            return Err(version::VersionError::TooLong.into());
        }
        if rd.read_buf(buf).await? == 0 {
            return Err(ConnError::Protocol(
                "peer closed before its version line".into(),
            ));
        }
    };
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
            Ok((version, uid))
        }
        Err(why) => {
            m.errors.inc();
            let _ = encode_frame(version, 0, &rerror(&why), &mut out);
            let _ = wr.write_all(&out).await;
            Err(ConnError::Protocol(why))
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
