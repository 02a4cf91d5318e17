//! One venti connection: version line, hello, then pipelined requests.
//!
//! The reader (this task) decodes requests in arrival order and starts
//! each one: pings are answered at once, reads run on the blocking pool,
//! writes and syncs go to the store's committer in arrival order (so a
//! sync covers every earlier write of this connection). Replies go, in
//! whatever order they finish, to a writer task that coalesces them into
//! few socket writes. A semaphore bounds the requests in flight: when the
//! peer stops reading replies, the writer stalls, permits run out, the
//! reader stops reading, and TCP pushes back on the peer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use eventi_shared::codec::{decode_body, encode_frame, CodecError, Frame, FrameDecoder};
use eventi_shared::version::{self, Version};
use eventi_shared::{Message, Score, MAX_BLOCK_V02};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout;

use crate::config::Limits;
use crate::metrics::{Kind, Metrics};
use crate::store::{BlockKey, NewBlock, Store, StoreError};

/// What every connection shares.
pub struct Shared {
    /// The block store.
    pub store: Store,
    /// Metrics to update.
    pub metrics: Arc<Metrics>,
    /// Limits to enforce.
    pub limits: Limits,
}

/// Why a connection ended abnormally (logged, never sent).
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("version line: {0}")]
    Version(#[from] version::VersionError),
    #[error("{0}")]
    Protocol(String),
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

impl From<CodecError> for ConnError {
    fn from(e: CodecError) -> Self {
        ConnError::Protocol(e.to_string())
    }
}

struct Reply {
    tag: u8,
    message: Message,
    kind: Kind,
    started: Instant,
    _permit: OwnedSemaphorePermit,
}

/// Serves one connection until the peer leaves, misbehaves, or the server
/// shuts down. Never panics on bad input; logs why it closed.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    shared.metrics.connections.inc();
    match run(stream, peer, &shared, shutdown).await {
        Ok(()) => tracing::debug!(%peer, "connection closed"),
        Err(e) => {
            shared.metrics.connections_dropped.inc();
            tracing::info!(%peer, error = %e, "connection closed");
        }
    }
    shared.metrics.connections.dec();
}

async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnError> {
    let limits = &shared.limits;
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(128 * 1024);
    let handshake = Duration::from_secs(limits.handshake_timeout_secs);
    let (version, uid) = timeout(handshake, hello(&mut rd, &mut wr, &mut buf, shared))
        .await
        .map_err(|_| ConnError::Timeout("version line and hello"))??;
    tracing::debug!(%peer, version = version.as_str(), %uid, "session started");

    let max_block = match version {
        Version::V02 => MAX_BLOCK_V02,
        Version::V04 => limits.max_block_v04,
    };
    // Twrite's header is 6 bytes; a little slack keeps the error for an
    // oversized block a clear Rerror rather than a dropped connection.
    let decoder = FrameDecoder::new(version, max_block + 64);
    let (reply_tx, reply_rx) = mpsc::unbounded_channel::<Reply>();
    let writer = tokio::spawn(write_replies(
        wr,
        version,
        reply_rx,
        Arc::clone(&shared.metrics),
        Duration::from_secs(limits.write_timeout_secs),
        peer,
    ));
    let permits = Arc::new(Semaphore::new(limits.max_in_flight));
    let idle = Duration::from_secs(limits.idle_timeout_secs);
    let frame_time = Duration::from_secs(limits.frame_timeout_secs);

    let result: Result<(), ConnError> = async {
        loop {
            let body = loop {
                if let Some(body) = decoder.decode(&mut buf)? {
                    break Some(body);
                }
                let in_flight = permits.available_permits() < limits.max_in_flight;
                let wait = if !buf.is_empty() {
                    Some((frame_time, "rest of a frame"))
                } else if !in_flight {
                    Some((idle, "idle connection"))
                } else {
                    None
                };
                let read = async {
                    match wait {
                        Some((d, what)) => timeout(d, rd.read_buf(&mut buf))
                            .await
                            .map_err(|_| ConnError::Timeout(what))?
                            .map_err(ConnError::from),
                        None => rd.read_buf(&mut buf).await.map_err(ConnError::from),
                    }
                };
                tokio::select! {
                    n = read => {
                        let n = n?;
                        if n == 0 {
                            if !buf.is_empty() {
                                return Err(ConnError::Protocol("peer closed mid-frame".into()));
                            }
                            break None;
                        }
                        shared.metrics.bytes_in.inc_by(n as u64);
                    }
                    _ = shutdown.changed() => break None,
                    _ = reply_tx.closed() => return Err(ConnError::Protocol("reply writer stopped".into())),
                }
            };
            let Some(body) = body else { return Ok(()) };
            let permit = Arc::clone(&permits)
                .acquire_owned()
                .await
                .expect("semaphore never closed");
            let started = Instant::now();
            match decode_body(body) {
                Ok(Frame { message: Message::Tgoodbye, .. }) => return Ok(()),
                Ok(frame) => dispatch(frame, version, max_block, shared, &reply_tx, started, permit).await,
                Err(e) => match e.tag() {
                    Some(tag) => {
                        tracing::info!(%peer, error = %e, "bad request");
                        let error = match e {
                            CodecError::UnknownType { .. } => "unknown request".to_string(),
                            other => other.to_string(),
                        };
                        send(&reply_tx, tag, Message::Rerror { error }, Kind::Other, started, permit);
                    }
                    None => return Err(e.into()),
                },
            }
        }
    }
    .await;

    // Let requests in flight finish (bounded), then let the writer drain.
    let grace = Duration::from_secs(limits.shutdown_grace_secs);
    let all = limits.max_in_flight as u32;
    if timeout(grace, permits.acquire_many(all)).await.is_err() {
        tracing::warn!(%peer, "requests still in flight after the grace period");
    }
    drop(reply_tx);
    let _ = writer.await;
    result
}

/// Exchanges version lines and answers Thello. Returns the version and uid.
async fn hello(
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    buf: &mut BytesMut,
    shared: &Shared,
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
    let refuse = |why: String| ConnError::Protocol(why);
    let reply = match decode_body(body) {
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
    };
    let mut out = BytesMut::new();
    match reply {
        Ok(uid) => {
            let rhello = Message::Rhello {
                sid: "anonymous".into(),
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
            let _ = encode_frame(
                version,
                0,
                &Message::Rerror { error: why.clone() },
                &mut out,
            );
            let _ = wr.write_all(&out).await;
            Err(refuse(why))
        }
    }
}

fn send(
    tx: &mpsc::UnboundedSender<Reply>,
    tag: u8,
    message: Message,
    kind: Kind,
    started: Instant,
    permit: OwnedSemaphorePermit,
) {
    // A closed channel means the writer died; the reader notices and stops.
    let _ = tx.send(Reply {
        tag,
        message,
        kind,
        started,
        _permit: permit,
    });
}

fn rerror(e: impl std::fmt::Display) -> Message {
    Message::Rerror {
        error: e.to_string(),
    }
}

async fn dispatch(
    frame: Frame,
    version: Version,
    max_block: usize,
    shared: &Arc<Shared>,
    reply_tx: &mpsc::UnboundedSender<Reply>,
    started: Instant,
    permit: OwnedSemaphorePermit,
) {
    let tag = frame.tag;
    match frame.message {
        Message::Tping => send(reply_tx, tag, Message::Rping, Kind::Ping, started, permit),
        Message::Thello { .. } => send(
            reply_tx,
            tag,
            rerror("hello already done on this connection"),
            Kind::Hello,
            started,
            permit,
        ),
        Message::Tread {
            score,
            block_type,
            count,
        } => {
            let key = BlockKey { score, block_type };
            let shared = Arc::clone(shared);
            let tx = reply_tx.clone();
            tokio::task::spawn_blocking(move || {
                let message = match shared.store.read(&key) {
                    Ok(Some(data)) => read_reply(data, count, version),
                    Ok(None) => rerror(format!(
                        "no block with score {score}/{} exists",
                        block_type.to_wire()
                    )),
                    Err(e) => {
                        if matches!(e, StoreError::Corrupt { .. }) {
                            shared.metrics.corrupt_reads.inc();
                        }
                        tracing::error!(error = %e, "read failed");
                        rerror(e)
                    }
                };
                send(&tx, tag, message, Kind::Read, started, permit);
            });
        }
        Message::Twrite { block_type, data } => {
            if data.len() > max_block {
                let why = format!(
                    "block too large: {} bytes, limit {} on protocol {}",
                    data.len(),
                    max_block,
                    version.as_str()
                );
                return send(reply_tx, tag, rerror(why), Kind::Write, started, permit);
            }
            let score = Score::of(&data);
            if data.is_empty() {
                return send(
                    reply_tx,
                    tag,
                    Message::Rwrite { score },
                    Kind::Write,
                    started,
                    permit,
                );
            }
            let block = NewBlock {
                key: BlockKey { score, block_type },
                data,
            };
            let tx = reply_tx.clone();
            let metrics = Arc::clone(&shared.metrics);
            let done = Box::new(move |r: Result<bool, StoreError>| {
                let message = match r {
                    Ok(true) => {
                        metrics.writes_new.inc();
                        Message::Rwrite { score }
                    }
                    Ok(false) => {
                        metrics.writes_duplicate.inc();
                        Message::Rwrite { score }
                    }
                    Err(e) => rerror(e),
                };
                send(&tx, tag, message, Kind::Write, started, permit);
            });
            shared.store.submit_write(block, done).await;
        }
        Message::Tsync => {
            let tx = reply_tx.clone();
            let done = Box::new(move |r: Result<(), StoreError>| {
                let message = match r {
                    Ok(()) => Message::Rsync,
                    Err(e) => rerror(e),
                };
                send(&tx, tag, message, Kind::Sync, started, permit);
            });
            shared.store.submit_sync(done).await;
        }
        other => {
            let why = format!("unknown request {}", other.name());
            send(reply_tx, tag, rerror(why), Kind::Other, started, permit)
        }
    }
}

fn read_reply(data: Bytes, count: u32, version: Version) -> Message {
    if data.len() > count as usize {
        return rerror(format!(
            "read too small: asked for {count} need at least {}",
            data.len()
        ));
    }
    // type[1] tag[1] data must fit the 2-byte length of protocol 02.
    if version == Version::V02 && data.len() + 2 > u16::MAX as usize {
        return rerror(format!(
            "block of {} bytes is too large for protocol 02",
            data.len()
        ));
    }
    Message::Rread { data }
}

async fn write_replies(
    mut wr: OwnedWriteHalf,
    version: Version,
    mut replies: mpsc::UnboundedReceiver<Reply>,
    metrics: Arc<Metrics>,
    write_timeout: Duration,
    peer: SocketAddr,
) {
    const BATCH: usize = 256 * 1024;
    let mut out = BytesMut::with_capacity(BATCH);
    let mut done: Vec<Reply> = Vec::new();
    while let Some(first) = replies.recv().await {
        let mut next = Some(first);
        while let Some(reply) = next.take() {
            let m = metrics.kind(reply.kind);
            m.requests.inc();
            if matches!(reply.message, Message::Rerror { .. }) {
                m.errors.inc();
            }
            m.latency.observe(reply.started.elapsed().as_secs_f64());
            if let Err(e) = encode_frame(version, reply.tag, &reply.message, &mut out) {
                let _ = encode_frame(version, reply.tag, &rerror(e), &mut out);
            }
            done.push(reply);
            if out.len() < BATCH {
                next = replies.try_recv().ok();
            }
        }
        match timeout(write_timeout, wr.write_all(&out)).await {
            Ok(Ok(())) => {
                metrics.bytes_out.inc_by(out.len() as u64);
            }
            Ok(Err(e)) => {
                tracing::info!(%peer, error = %e, "writing replies failed");
                return;
            }
            Err(_) => {
                tracing::info!(%peer, "peer stopped reading replies; dropping the connection");
                return;
            }
        }
        out.clear();
        done.clear(); // returns the permits
    }
    let _ = wr.shutdown().await;
}
