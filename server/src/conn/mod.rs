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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use eventi_shared::codec::{decode_body, encode_frame, CodecError, Frame, FrameDecoder};
use eventi_shared::errors::KnownError;
use eventi_shared::version::{self, Version};
use eventi_shared::{auth, Message, Score, MAX_BLOCK_V02};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

use crate::metrics::Kind;
use crate::out_queue::OutQueue;
pub use crate::state::Shared;
use eventi_store::{BlockKey, Job, Lookup, NewBlock, StoreError, ANONYMOUS};
use eventi_store::{QuotaPolicy, WriteLimit};

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

/// Replies queued for one socket write are flushed past this size.
const OUT_BUDGET: usize = 1 << 20;

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

/// The state of one session after hello.
struct Session<'a> {
    shared: &'a Arc<Shared>,
    version: Version,
    max_block: usize,
    out: OutQueue,
    /// Requests whose replies will arrive on `done_tx`'s channel.
    in_flight: usize,
    done_tx: mpsc::UnboundedSender<Reply>,
    /// Writes and syncs decoded this round, for one group commit.
    jobs: Vec<Job>,
    /// The write key this session authenticated as (`ANONYMOUS` until then).
    writer: u32,
    /// The challenge sent in Rhello, and the uid from Thello: what a
    /// Tauth0 signature must cover.
    challenge: [u8; auth::CHALLENGE_LEN],
    uid: String,
    /// How long to pause before reading more, for a key over its rate.
    throttle: Duration,
    /// The writer's name in metrics ("anonymous" until authenticated),
    /// and its stored-bytes counter, resolved once per session.
    writer_label: Arc<str>,
    stored_counter: prometheus_client::metrics::counter::Counter,
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
    let challenge: [u8; auth::CHALLENGE_LEN] = rand::random();
    let (version, uid) = timeout(
        handshake,
        hello(&mut rd, &mut wr, &mut buf, shared, &challenge),
    )
    .await
    .map_err(|_| ConnError::Timeout("version line and hello"))??;
    tracing::debug!(%peer, version = version.as_str(), uid = %uid, "session started");

    let max_block = match version {
        Version::V02 => MAX_BLOCK_V02,
        Version::V04 => limits.max_block_v04,
    };
    // Slack over the largest block keeps an oversized write a clear
    // Rerror rather than a dropped connection.
    let decoder = FrameDecoder::new(version, max_block + 64);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Reply>();
    let mut s = Session {
        shared,
        version,
        max_block,
        out: OutQueue::default(),
        in_flight: 0,
        done_tx,
        jobs: Vec::new(),
        writer: ANONYMOUS,
        challenge,
        uid,
        throttle: Duration::ZERO,
        writer_label: Arc::from("anonymous"),
        stored_counter: shared.metrics.key_stored_counter("anonymous"),
    };
    let idle = Duration::from_secs(limits.idle_timeout_secs);
    let frame_time = Duration::from_secs(limits.frame_timeout_secs);
    let write_time = Duration::from_secs(limits.write_timeout_secs);
    let grace = Duration::from_secs(limits.shutdown_grace_secs);
    let mut closing: Option<tokio::time::Instant> = None;
    let mut result: Result<(), ConnError> = Ok(());

    loop {
        // 1. Start every request already received, within the limits.
        while closing.is_none()
            && s.in_flight + s.jobs.len() < limits.max_in_flight
            && s.out.len() < OUT_BUDGET
        {
            let body = match decoder.decode(&mut buf) {
                Ok(Some(body)) => body,
                Ok(None) => break,
                Err(e) => {
                    result = Err(e.into());
                    closing = Some(tokio::time::Instant::now() + grace);
                    break;
                }
            };
            let started = Instant::now();
            match decode_body(body) {
                Ok(Frame {
                    message: Message::Tgoodbye,
                    ..
                }) => closing = Some(tokio::time::Instant::now() + grace),
                Ok(frame) => s.start(frame, started),
                Err(e) => match e.tag() {
                    Some(tag) => {
                        tracing::info!(%peer, error = %e, "bad request");
                        let error = match e {
                            CodecError::UnknownType { .. } => "unknown request".to_string(),
                            other => other.to_string(),
                        };
                        s.reply(tag, Message::Rerror { error }, Kind::Other, started);
                    }
                    None => {
                        result = Err(e.into());
                        closing = Some(tokio::time::Instant::now() + grace);
                    }
                },
            }
        }
        s.commit();
        // 2. Collect replies finished elsewhere, without waiting.
        while let Ok(reply) = done_rx.try_recv() {
            s.finish(reply);
        }
        // 3. One socket write for everything ready.
        if !s.out.is_empty() {
            let queued = s.out.len() as u64;
            match timeout(write_time, s.out.write_to(&mut wr)).await {
                Ok(Ok(())) => {
                    shared.metrics.bytes_out.inc_by(queued);
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => {
                    tracing::info!(%peer, "peer stopped reading replies; dropping the connection");
                    return Err(ConnError::Timeout("peer not reading replies"));
                }
            }
        }
        if closing.is_some() && s.in_flight == 0 {
            break;
        }
        // A key over its rate: pause before reading more, so the sender
        // is slowed by TCP and other connections are unaffected.
        if !s.throttle.is_zero() && closing.is_none() {
            let pause = s.throttle.min(Duration::from_secs(1));
            tokio::time::sleep(pause).await;
            s.throttle -= pause;
        }
        let can_read = closing.is_none() && s.in_flight < limits.max_in_flight;
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
        tokio::select! {
            n = read, if can_read => match n {
                Ok(0) => {
                    if !buf.is_empty() {
                        result = Err(ConnError::Protocol("peer closed mid-frame".into()));
                    }
                    closing = Some(tokio::time::Instant::now() + grace);
                }
                Ok(n) => {
                    shared.metrics.bytes_in.inc_by(n as u64);
                }
                Err(e) => {
                    result = Err(e);
                    closing = Some(tokio::time::Instant::now() + grace);
                }
            },
            Some(reply) = done_rx.recv(), if s.in_flight > 0 => s.finish(reply),
            _ = shutdown.changed(), if closing.is_none() => {
                closing = Some(tokio::time::Instant::now() + grace);
            }
            _ = tokio::time::sleep_until(closing.unwrap_or_else(tokio::time::Instant::now)), if closing.is_some() => {
                tracing::warn!(%peer, in_flight = s.in_flight, "requests still in flight after the grace period");
                break;
            }
        }
    }
    let _ = wr.shutdown().await;
    result
}

impl Session<'_> {
    /// Encodes a reply now and counts it.
    fn reply(&mut self, tag: u8, message: Message, kind: Kind, started: Instant) {
        let m = self.shared.metrics.kind(kind);
        m.requests.inc();
        if matches!(message, Message::Rerror { .. }) {
            m.errors.inc();
        }
        m.latency.observe(started.elapsed().as_secs_f64());
        if let Err(e) = self.out.push(self.version, tag, &message) {
            let _ = self.out.push(self.version, tag, &rerror(e));
        }
    }

    fn finish(&mut self, r: Reply) {
        self.in_flight -= 1;
        self.reply(r.tag, r.message, r.kind, r.started);
    }

    /// Hands this round's writes and syncs to the group commit.
    fn commit(&mut self) {
        if !self.jobs.is_empty() {
            self.in_flight += self.jobs.len();
            self.shared.store.submit(std::mem::take(&mut self.jobs));
        }
    }

    fn start(&mut self, frame: Frame, started: Instant) {
        let tag = frame.tag;
        match frame.message {
            Message::Tping => self.reply(tag, Message::Rping, Kind::Ping, started),
            Message::Thello { .. } => self.reply(
                tag,
                rerror("hello already done on this connection"),
                Kind::Hello,
                started,
            ),
            Message::Tauth0 { key, signature } => {
                let message = self.authenticate(&key, &signature);
                self.reply(tag, message, Kind::Auth, started);
            }
            Message::Tread { .. } if self.writer == ANONYMOUS && !self.shared.anonymous_reads => {
                self.reply(
                    tag,
                    rerror("read needs an authorized key"),
                    Kind::Read,
                    started,
                )
            }
            Message::Tread {
                score,
                block_type,
                count,
            } => {
                // A read after a write of the same block in one round
                // must find it: commit what is queued first.
                self.commit();
                let key = BlockKey { score, block_type };
                match self.shared.store.try_read(&key) {
                    Ok(Lookup::WouldBlock) => self.read_in_background(tag, key, count, started),
                    found => {
                        let message = self.read_result(key, count, found);
                        self.reply(tag, message, Kind::Read, started);
                    }
                }
            }
            Message::Twrite { block_type, data } => {
                if data.len() > self.max_block {
                    let why = format!(
                        "block too large: {} bytes, limit {} on protocol {}",
                        data.len(),
                        self.max_block,
                        self.version.as_str()
                    );
                    return self.reply(tag, rerror(why), Kind::Write, started);
                }
                if let WriteLimit::Refused(why) = self.shared.keys.limit(self.writer) {
                    // Refused before any work is spent on the block. (The
                    // commit checks again: a key may be removed meanwhile.)
                    let reason = if self.writer == ANONYMOUS {
                        "no key"
                    } else {
                        "not authorized"
                    };
                    self.shared
                        .metrics
                        .refused_write(&self.writer_label, reason);
                    return self.reply(tag, rerror(why), Kind::Write, started);
                }
                self.throttle += self.shared.keys.throttle(self.writer, data.len() as u64);
                let score = Score::of(&data);
                if data.is_empty() {
                    return self.reply(tag, Message::Rwrite { score }, Kind::Write, started);
                }
                let block = NewBlock {
                    key: BlockKey { score, block_type },
                    data,
                    writer: self.writer,
                };
                let tx = self.done_tx.clone();
                let metrics = Arc::clone(&self.shared.metrics);
                let who = Arc::clone(&self.writer_label);
                let stored = self.stored_counter.clone();
                let len = block.data.len() as u64;
                let done = Box::new(move |r: Result<bool, StoreError>| {
                    let message = match r {
                        Ok(true) => {
                            metrics.writes_new.inc();
                            stored.inc_by(len);
                            Message::Rwrite { score }
                        }
                        Ok(false) => {
                            metrics.writes_duplicate.inc();
                            Message::Rwrite { score }
                        }
                        Err(e) => {
                            match &e {
                                StoreError::QuotaExceeded => metrics.refused_write(&who, "quota"),
                                StoreError::WriteRefused(_) => {
                                    metrics.refused_write(&who, "not authorized")
                                }
                                StoreError::DiskFull { .. } => {
                                    metrics.refused_write(&who, "disk full")
                                }
                                StoreError::ReadOnly(_) => metrics.refused_write(&who, "read-only"),
                                _ => {}
                            }
                            rerror(write_error_text(&e))
                        }
                    };
                    let _ = tx.send(Reply {
                        tag,
                        message,
                        kind: Kind::Write,
                        started,
                    });
                });
                self.jobs.push(Job::Write(block, done));
            }
            Message::Tsync => {
                let tx = self.done_tx.clone();
                let done = Box::new(move |r: Result<(), StoreError>| {
                    let message = match r {
                        Ok(()) => Message::Rsync,
                        Err(e) => rerror(e),
                    };
                    let _ = tx.send(Reply {
                        tag,
                        message,
                        kind: Kind::Sync,
                        started,
                    });
                });
                self.jobs.push(Job::Sync(done));
            }
            other => {
                let why = format!("unknown request {}", other.name());
                self.reply(tag, rerror(why), Kind::Other, started)
            }
        }
    }

    /// Checks a Tauth0 against this session's challenge, and binds the
    /// session to the key if it is authorized.
    fn authenticate(&mut self, key: &[u8; 32], signature: &[u8; 64]) -> Message {
        let metrics = &self.shared.metrics;
        if self.writer != ANONYMOUS {
            metrics.auth_failure("twice");
            return rerror("already authenticated on this connection");
        }
        if let Err(e) = auth::verify(
            key,
            signature,
            &self.challenge,
            self.version.as_str(),
            &self.uid,
        ) {
            metrics.auth_failure("bad signature");
            return rerror(format!("authentication failed: {e}"));
        }
        match self.shared.keys.by_public(key) {
            Some(entry) => {
                tracing::info!(key = %entry.name, fingerprint = %entry.fingerprint(), "session authenticated");
                self.writer = entry.id;
                self.writer_label = Arc::from(entry.name.as_str());
                self.stored_counter = self.shared.metrics.key_stored_counter(&entry.name);
                Message::Rauth0
            }
            None => {
                metrics.auth_failure("unknown key");
                rerror("authentication failed: key not authorized on this server")
            }
        }
    }

    /// A read whose bytes are not cached goes to the blocking pool, so
    /// that cold reads of one connection proceed in parallel.
    fn read_in_background(&mut self, tag: u8, key: BlockKey, count: u32, started: Instant) {
        self.in_flight += 1;
        self.shared.metrics.cold_reads.inc();
        let shared = Arc::clone(self.shared);
        let tx = self.done_tx.clone();
        let version = self.version;
        tokio::task::spawn_blocking(move || {
            let found = shared.store.read(&key).map(|r| match r {
                Some(data) => Lookup::Found(data),
                None => Lookup::Absent,
            });
            let message = read_result(&shared, version, key, count, found);
            let _ = tx.send(Reply {
                tag,
                message,
                kind: Kind::Read,
                started,
            });
        });
    }

    fn read_result(&self, key: BlockKey, count: u32, found: Result<Lookup, StoreError>) -> Message {
        read_result(self.shared, self.version, key, count, found)
    }
}

fn read_result(
    shared: &Shared,
    version: Version,
    key: BlockKey,
    count: u32,
    found: Result<Lookup, StoreError>,
) -> Message {
    match found {
        Ok(Lookup::Found(data)) => read_reply(data, count, version),
        Ok(Lookup::Absent) | Ok(Lookup::WouldBlock) => rerror(format!(
            "{} with score {}/{} exists",
            KnownError::NoBlock.prefix(),
            key.score,
            key.block_type.to_wire()
        )),
        Err(e) => {
            if matches!(e, StoreError::Corrupt { .. }) {
                shared.metrics.corrupt_reads.inc();
            }
            tracing::error!(error = %e, "read failed");
            rerror(e)
        }
    }
}

/// Exchanges version lines and answers Thello. Returns the version and uid.
async fn hello(
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

/// The Rerror text for a failed write: the store's own words, except that
/// a full disk is the server's, in the words clients recognise
/// ([`KnownError::DiskFull`]).
fn write_error_text(e: &StoreError) -> String {
    match e {
        // "server " + "disk full: ..." begins with the known prefix.
        StoreError::DiskFull { .. } => format!("server {e}"),
        other => other.to_string(),
    }
}

fn rerror(e: impl std::fmt::Display) -> Message {
    Message::Rerror {
        error: e.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_reported_in_the_words_clients_recognise() {
        let text = write_error_text(&StoreError::DiskFull {
            free: 3 << 20,
            reserve: 8 << 20,
        });
        assert_eq!(
            text,
            "server disk full: 3.00 MiB free, 8.00 MiB kept in reserve"
        );
        assert_eq!(KnownError::classify(&text), Some(KnownError::DiskFull));
    }
}
