//! One venti connection: version line, hello, then pipelined requests.
//!
//! One task serves a connection, in rounds: decode every request already
//! received (up to the in-flight limit), answer pings and cached reads on
//! the spot, queue writes and syncs to the store's group commit in arrival
//! order, send a cold read (`Lookup::WouldBlock`) to the blocking pool,
//! then send every reply ready so far in one socket write, and wait for
//! more requests or for replies finishing elsewhere. The common path has
//! no hand-off between threads; the profile that led here is in
//! `docs/PERFORMANCE.md`.
//!
//! Back-pressure: at most `max_in_flight` requests are unanswered; at the
//! limit, or while a peer is not reading its replies, the task stops
//! reading and TCP pushes back on the peer.

//!
//! The parts: `hello` (version lines and Thello), `session` (a session's
//! state and the dispatch of each request), one handler file per request
//! kind (`auth`, `read`, `write` with sync), and here the rounds.

mod auth;
mod heads;
mod hello;
mod prune;
mod query;
mod read;
mod session;
mod write;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use eventi_shared::codec::{decode_body, CodecError, Frame, FrameDecoder};
use eventi_shared::version::{self, Version};
use eventi_shared::{auth as venti_auth, Message, MAX_BLOCK_V02};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::config::Limits;
use crate::metrics::Kind;
use crate::shutdown::Shutdown;
use crate::state::Shared;
use session::Session;

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

/// A reply finished away from the connection's task.
struct Reply {
    tag: u8,
    message: Message,
    kind: Kind,
    started: Instant,
}

/// The connection's reader: the socket, or an encrypted session's
/// plaintext.
pub(crate) type Reader = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
/// The connection's writer, likewise.
pub(crate) type Writer = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// Replies queued for one socket write are flushed past this size.
const OUT_BUDGET: usize = 1 << 20;

/// Serves one connection until the peer leaves, misbehaves, or the server
/// shuts down. Never panics on bad input; logs why it closed.
pub async fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, shutdown: Shutdown) {
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

/// When a connection stops taking requests, and why it will have ended.
struct Ending {
    /// Set once the connection is closing: the end of its grace period
    /// for the requests still in flight.
    at: Option<tokio::time::Instant>,
    result: Result<(), ConnError>,
    grace: Duration,
}

impl Ending {
    fn new(grace: Duration) -> Ending {
        Ending {
            at: None,
            result: Ok(()),
            grace,
        }
    }

    /// Stops taking requests; those in flight get the grace period.
    fn close(&mut self) {
        self.at
            .get_or_insert_with(|| tokio::time::Instant::now() + self.grace);
    }

    /// Closes, remembering why.
    fn fail(&mut self, e: ConnError) {
        self.result = Err(e);
        self.close();
    }

    fn is_closing(&self) -> bool {
        self.at.is_some()
    }
}

async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    mut shutdown: Shutdown,
) -> Result<(), ConnError> {
    let limits = &shared.limits;
    stream.set_nodelay(true)?;
    let (rd, wr) = stream.into_split();
    let (mut rd, mut wr): (Reader, Writer) = (Box::new(rd), Box::new(wr));
    let mut buf = BytesMut::with_capacity(128 * 1024);
    let handshake = Duration::from_secs(limits.handshake_timeout_secs);
    let challenge: [u8; venti_auth::CHALLENGE_LEN] = rand::random();
    let hello::Hello {
        version,
        uid,
        encrypted,
    } = timeout(
        handshake,
        hello::hello(&mut rd, &mut wr, &mut buf, shared, &challenge),
    )
    .await
    .map_err(|_| ConnError::Timeout("version line and hello"))??;
    tracing::debug!(%peer, version = version.as_str(), uid = %uid, encrypted = encrypted.is_some(), "session started");
    if encrypted.is_some() {
        shared.metrics.sessions_encrypted.inc();
    }

    let max_block = match version {
        Version::V02 => MAX_BLOCK_V02,
        Version::V04 => limits.max_block_v04,
    };
    // Slack over the largest block keeps an oversized write a clear
    // Rerror rather than a dropped connection.
    let decoder = FrameDecoder::new(version, max_block + 64);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Reply>();
    let mut s = Session::new(
        shared, version, max_block, challenge, uid, encrypted, done_tx,
    );
    let idle = Duration::from_secs(limits.idle_timeout_secs);
    let frame_time = Duration::from_secs(limits.frame_timeout_secs);
    let write_time = Duration::from_secs(limits.write_timeout_secs);
    let mut ending = Ending::new(Duration::from_secs(limits.shutdown_grace_secs));

    loop {
        // 1. Start every request already received, within the limits.
        start_received(&mut s, &decoder, &mut buf, &mut ending, peer, limits);
        s.commit();
        // 2. Collect replies finished elsewhere, without waiting.
        while let Ok(reply) = done_rx.try_recv() {
            s.finish(reply);
        }
        // 3. One socket write for everything ready.
        send_replies(&mut s, &mut wr, write_time, peer).await?;
        if ending.is_closing() && s.in_flight == 0 {
            break;
        }
        // A key over its rate: pause before reading more, so the sender
        // is slowed by TCP and other connections are unaffected.
        if !s.throttle.is_zero() && !ending.is_closing() {
            let pause = s.throttle.min(Duration::from_secs(1));
            tokio::time::sleep(pause).await;
            s.throttle -= pause;
        }
        let can_read = !ending.is_closing() && s.in_flight < limits.max_in_flight;
        if can_read && decoder.frame_ready(&buf) {
            continue;
        }
        // 4. Wait for requests, replies, shutdown, or a timeout.
        let wait = if !buf.is_empty() {
            Some((frame_time, "rest of a frame"))
        } else if s.in_flight == 0 {
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
        let closing = ending.is_closing();
        let grace_over = ending.at.unwrap_or_else(tokio::time::Instant::now);
        tokio::select! {
            n = read, if can_read => match n {
                Ok(0) if !buf.is_empty() => {
                    ending.fail(ConnError::Protocol("peer closed mid-frame".into()))
                }
                Ok(0) => ending.close(),
                Ok(n) => {
                    shared.metrics.bytes_in.inc_by(n as u64);
                }
                Err(e) => ending.fail(e),
            },
            Some(reply) = done_rx.recv(), if s.in_flight > 0 => s.finish(reply),
            _ = shutdown.wait(), if !closing => ending.close(),
            _ = tokio::time::sleep_until(grace_over), if closing => {
                tracing::warn!(%peer, in_flight = s.in_flight, "requests still in flight after the grace period");
                break;
            }
        }
    }
    let _ = wr.shutdown().await;
    ending.result
}

/// Decodes and starts every request already in `buf`, while the
/// connection is open and under its in-flight and reply-size limits.
fn start_received(
    s: &mut Session<'_>,
    decoder: &FrameDecoder,
    buf: &mut BytesMut,
    ending: &mut Ending,
    peer: SocketAddr,
    limits: &Limits,
) {
    while !ending.is_closing()
        && s.in_flight + s.jobs.len() < limits.max_in_flight
        && s.out.len() < OUT_BUDGET
    {
        let body = match decoder.decode(buf) {
            Ok(Some(body)) => body,
            Ok(None) => break,
            Err(e) => return ending.fail(e.into()),
        };
        let started = Instant::now();
        match decode_body(body) {
            Ok(Frame {
                message: Message::Tgoodbye,
                ..
            }) => ending.close(),
            Ok(frame) => s.start(frame.tag, frame.message, started),
            Err(e) => match e.tag() {
                Some(tag) => {
                    tracing::info!(%peer, error = %e, "bad request");
                    let error = match e {
                        CodecError::UnknownType { .. } => "unknown request".to_string(),
                        other => other.to_string(),
                    };
                    s.reply(tag, Message::Rerror { error }, Kind::Other, started);
                }
                None => ending.fail(e.into()),
            },
        }
    }
}

/// Writes every queued reply in one socket write, within `write_time`.
async fn send_replies(
    s: &mut Session<'_>,
    wr: &mut Writer,
    write_time: Duration,
    peer: SocketAddr,
) -> Result<(), ConnError> {
    if s.out.is_empty() {
        return Ok(());
    }
    let queued = s.out.len() as u64;
    match timeout(write_time, s.out.write_to(wr)).await {
        Ok(Ok(())) => {
            s.shared.metrics.bytes_out.inc_by(queued);
            Ok(())
        }
        Ok(Err(e)) => Err(e.into()),
        Err(_) => {
            tracing::info!(%peer, "peer stopped reading replies; dropping the connection");
            Err(ConnError::Timeout("peer not reading replies"))
        }
    }
}

fn rerror(e: impl std::fmt::Display) -> Message {
    Message::Rerror {
        error: e.to_string(),
    }
}
