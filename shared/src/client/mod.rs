//! A pipelined async venti client.
//!
//! One connection carries up to 256 requests at once (tags are one byte).
//! Any number of tasks may share a [`VentiClient`] (it is cheap to clone):
//! each request takes a free tag, its frame goes to a writer task that
//! coalesces frames into few `write`s, and a reader task hands each reply
//! to the request with the same tag. A tag is reused only after its reply
//! has arrived, even if the request that took it was cancelled.
//!
//! Nothing waits on the server for ever: connecting, the version
//! exchange, hello and auth each have [`ClientOptions::timeout`], and once
//! the session runs, a connection with requests in flight that brings no
//! reply for that long is declared dead: every request on it fails with
//! [`ClientError::Timeout`] naming what it was waiting for. The deadline
//! is on the server's silence, not on a request's age, so a slow link that
//! keeps answering is never cut off.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::auth;
use crate::codec::{decode_body, encode_frame, CodecError, Frame, FrameDecoder, Message};
use crate::version::{self, Version, VersionError};
use crate::{BlockType, Score};

mod extension;
pub use extension::KeyInfo;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed.
    #[error("venti connection: {0}")]
    Io(#[from] std::io::Error),
    /// Version negotiation failed.
    #[error("venti version: {0}")]
    Version(#[from] VersionError),
    /// The server sent bytes that do not decode.
    #[error("venti protocol: {0}")]
    Codec(#[from] CodecError),
    /// The server answered Rerror.
    #[error("venti server: {0}")]
    Server(String),
    /// The connection is gone; requests in flight on it were lost.
    #[error("venti connection closed")]
    Disconnected,
    /// The server did not answer in time; the connection was given up.
    #[error("no answer for {} s during {phase}", after.as_secs())]
    Timeout {
        /// What was waited for: `connect`, `version exchange`, `hello`,
        /// `auth`, or a request (`read`, `write`, `sync`, `ping`).
        phase: &'static str,
        /// How long the server was silent.
        after: Duration,
    },
    /// A reply of the wrong type for its request.
    #[error("venti protocol: expected {expected} reply, got {got}")]
    UnexpectedReply {
        /// The reply type the request calls for.
        expected: &'static str,
        /// What arrived.
        got: &'static str,
    },
    /// A write key was given but the server offers no write-key
    /// authentication (a plain venti server).
    #[error("venti server does not offer write-key authentication")]
    NoAuth,
    /// The server does not speak the eventi extension asked for (a plain
    /// venti server, or an older eventi-server).
    #[error("the server does not support this eventi extension")]
    Unsupported,
    /// The encrypted session could not be opened: a handshake that failed,
    /// or a server that proved another identity than the one pinned.
    #[error(transparent)]
    Session(#[from] crate::session::SessionError),
    /// A frame of the encrypted session failed authentication.
    #[error("an encrypted frame from the server failed authentication: the bytes were changed in transit; the session is closed")]
    Tampered,
    /// A block read back does not hash to the score asked for.
    #[error("venti read asked for {want} but the data hashes to {got}")]
    HashMismatch {
        /// The score requested.
        want: Score,
        /// The score of the bytes received.
        got: Score,
    },
}

/// How to open a session.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The versions offered, in order of preference, e.g. `"04:02"`.
    pub offer: String,
    /// The uid sent in Thello.
    pub uid: String,
    /// Largest reply frame accepted (protects the client from a bad server).
    pub max_frame: usize,
    /// A write key to authenticate with (Tauth0) right after hello.
    pub write_key: Option<ed25519_dalek::SigningKey>,
    /// How long the server may stay silent: for each handshake step, and
    /// while requests are in flight (see the module documentation).
    pub timeout: Duration,
    /// Whether to encrypt the session, and whom to expect.
    pub server_key: ServerKey,
}

/// Whether a session is encrypted, and the server identity it expects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServerKey {
    /// Plain venti.
    #[default]
    Plain,
    /// Encrypted, with a server that proves this identity (refused otherwise).
    Pinned([u8; 32]),
    /// Encrypted if the server is an eventi-server (its version line
    /// says so), whatever identity it proves; plain otherwise. For a
    /// first contact, whose key is then shown and pinned.
    Learn,
}

/// The default [`ClientOptions::timeout`]: sized for a slow link, where
/// a reply may queue behind many megabytes of writes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            offer: "04:02".into(),
            uid: "anonymous".into(),
            max_frame: 16 << 20,
            write_key: None,
            timeout: DEFAULT_TIMEOUT,
            server_key: ServerKey::Plain,
        }
    }
}

const TAGS: usize = 256;

type ReplySlot = oneshot::Sender<Result<Message, ClientError>>;

struct Pending {
    free_tags: Vec<u8>,
    /// Per tag: who waits for its reply, and the request's name.
    waiting: Vec<Option<(ReplySlot, &'static str)>>,
    /// Requests in flight.
    busy: usize,
    /// When the server last showed life to a busy connection: its last
    /// reply, or the moment the connection went from idle to busy.
    alive_at: Instant,
    /// Why the connection ended, once it has.
    closed: Option<Closed>,
}

/// Why a connection ended, kept so that requests arriving later get the
/// same answer.
#[derive(Clone, Copy, Debug)]
enum Closed {
    Gone,
    Tampered,
    Stalled {
        phase: &'static str,
        after: Duration,
    },
}

impl Closed {
    fn error(self) -> ClientError {
        match self {
            Closed::Gone => ClientError::Disconnected,
            Closed::Tampered => ClientError::Tampered,
            Closed::Stalled { phase, after } => ClientError::Timeout { phase, after },
        }
    }
}

/// Runs one handshake step with the session's deadline.
async fn within<T>(
    after: Duration,
    phase: &'static str,
    step: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(after, step)
        .await
        .unwrap_or(Err(ClientError::Timeout { phase, after }))
}

/// What the client handles share. Dropping the last handle drops `frames`,
/// which ends the writer task and closes the connection.
struct Inner {
    version: Version,
    sid: String,
    peer: SocketAddr,
    encrypted: Option<Encrypted>,
    frames: mpsc::Sender<Bytes>,
    state: Arc<State>,
}

/// What the reader task needs: the requests waiting for replies.
struct State {
    peer: SocketAddr,
    tags: Semaphore,
    pending: Mutex<Pending>,
    timeout: Duration,
}

/// A handle on one venti session; clone it to issue requests from many tasks.
#[derive(Clone)]
pub struct VentiClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for VentiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VentiClient")
            .field("peer", &self.inner.peer)
            .field("version", &self.inner.version)
            .field("sid", &self.inner.sid)
            .finish()
    }
}

impl VentiClient {
    /// Connects, negotiates the version and says hello with default options.
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<VentiClient, ClientError> {
        Self::connect_with(addr, ClientOptions::default()).await
    }

    /// Connects with explicit options.
    pub async fn connect_with(
        addr: impl ToSocketAddrs,
        options: ClientOptions,
    ) -> Result<VentiClient, ClientError> {
        let after = options.timeout;
        let stream = within(after, "connect", async {
            Ok(TcpStream::connect(addr).await?)
        })
        .await?;
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?;
        let (rd, wr) = stream.into_split();
        let (mut rd, mut wr): (Reader, Writer) = (Box::new(rd), Box::new(wr));
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut encrypted = None;
        if options.server_key != ServerKey::Plain {
            let line = within(after, "version exchange", async {
                read_version_line(&mut rd, &mut buf).await
            })
            .await?;
            let (r, w, session) = within(after, "encrypted session handshake", async {
                encrypt(rd, wr, &mut buf, line, options.server_key).await
            })
            .await?;
            (rd, wr, encrypted) = (r, w, session);
        }
        let version = within(after, "version exchange", async {
            wr.write_all(format!("venti-{}-eventi\n", options.offer).as_bytes())
                .await?;
            let line = read_version_line(&mut rd, &mut buf).await?;
            let offered: Vec<Version> = options
                .offer
                .split(':')
                .filter_map(Version::from_token)
                .collect();
            Ok(version::negotiate_among(&line, &offered)?)
        })
        .await?;

        let decoder = FrameDecoder::new(version, options.max_frame);
        let sid = within(after, "hello", async {
            let mut out = BytesMut::new();
            let hello = Message::Thello {
                version: version.as_str().into(),
                uid: options.uid.clone(),
                strength: 0,
                crypto: Bytes::new(),
                codec: Bytes::new(),
            };
            encode_frame(version, 0, &hello, &mut out)?;
            wr.write_all(&out).await?;
            match next_frame(&mut rd, &mut buf, &decoder).await?.message {
                Message::Rhello { sid, .. } => Ok(sid),
                Message::Rerror { error } => Err(ClientError::Server(error)),
                other => Err(ClientError::UnexpectedReply {
                    expected: "rhello",
                    got: other.name(),
                }),
            }
        })
        .await?;
        if let Some(key) = &options.write_key {
            let challenge = auth::parse_challenge(&sid).ok_or(ClientError::NoAuth)?;
            within(after, "auth", async {
                let binding = encrypted.as_ref().map(|e: &Encrypted| &e.handshake_hash);
                let (key, signature) =
                    auth::sign(key, &challenge, version.as_str(), &options.uid, binding);
                let mut out = BytesMut::new();
                encode_frame(version, 0, &Message::Tauth0 { key, signature }, &mut out)?;
                wr.write_all(&out).await?;
                match next_frame(&mut rd, &mut buf, &decoder).await?.message {
                    Message::Rauth0 => Ok(()),
                    Message::Rerror { error } => Err(ClientError::Server(error)),
                    other => Err(ClientError::UnexpectedReply {
                        expected: "rauth0",
                        got: other.name(),
                    }),
                }
            })
            .await?;
        }

        let (frames_tx, frames_rx) = mpsc::channel(TAGS);
        let state = Arc::new(State {
            peer,
            tags: Semaphore::new(TAGS),
            pending: Mutex::new(Pending {
                free_tags: (0..=255u8).rev().collect(),
                waiting: (0..TAGS).map(|_| None).collect(),
                busy: 0,
                alive_at: Instant::now(),
                closed: None,
            }),
            timeout: after,
        });
        let inner = Arc::new(Inner {
            version,
            sid,
            peer,
            encrypted,
            frames: frames_tx,
            state: Arc::clone(&state),
        });
        tokio::spawn(write_loop(wr, frames_rx));
        tokio::spawn(read_loop(state, rd, buf, decoder));
        Ok(VentiClient { inner })
    }

    /// The negotiated protocol version.
    pub fn version(&self) -> Version {
        self.inner.version
    }

    /// The session id the server gave in Rhello.
    pub fn sid(&self) -> &str {
        &self.inner.sid
    }

    /// The server's address.
    pub fn peer(&self) -> SocketAddr {
        self.inner.peer
    }

    /// For an encrypted session, the identity the server proved and the
    /// session's handshake hash; `None` for plain venti.
    pub fn encrypted(&self) -> Option<Encrypted> {
        self.inner.encrypted
    }

    /// Sends one request and waits for its reply. Rerror comes back as
    /// [`ClientError::Server`].
    pub async fn rpc(&self, request: Message) -> Result<Message, ClientError> {
        let state = &self.inner.state;
        let phase = request.name();
        let Ok(permit) = state.tags.acquire().await else {
            return Err(state.closed_error());
        };
        let (tx, rx) = oneshot::channel();
        let tag = {
            let mut p = state.pending.lock().expect("pending lock");
            if let Some(closed) = p.closed {
                return Err(closed.error());
            }
            let tag = p.free_tags.pop().expect("a permit guarantees a free tag");
            p.waiting[tag as usize] = Some((tx, phase));
            if p.busy == 0 {
                p.alive_at = Instant::now();
            }
            p.busy += 1;
            tag
        };
        // The reader returns the permit with the tag, when the reply arrives.
        permit.forget();
        let mut out = BytesMut::new();
        if let Err(e) = encode_frame(self.inner.version, tag, &request, &mut out) {
            state.release(tag);
            return Err(e.into());
        }
        // The frame queue is full only while the socket does not drain: a
        // server that stopped reading is as silent as one that stopped
        // answering.
        let sent = tokio::time::timeout(state.timeout, self.inner.frames.send(out.freeze())).await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(state.closed_error()),
            Err(_) => {
                state.fail_all(Closed::Stalled {
                    phase,
                    after: state.timeout,
                });
                return Err(ClientError::Timeout {
                    phase,
                    after: state.timeout,
                });
            }
        }
        match rx.await {
            Ok(Ok(Message::Rerror { error })) => Err(ClientError::Server(error)),
            Ok(reply) => reply,
            Err(_) => Err(state.closed_error()),
        }
    }

    /// Checks that the server answers.
    pub async fn ping(&self) -> Result<(), ClientError> {
        expect(self.rpc(Message::Tping).await?, "rping", |m| {
            matches!(m, Message::Rping).then_some(())
        })
    }

    /// Reads block (score, type) of at most `max` bytes and checks that it
    /// hashes to `score`.
    pub async fn read(
        &self,
        score: Score,
        block_type: BlockType,
        max: u32,
    ) -> Result<Bytes, ClientError> {
        let reply = self
            .rpc(Message::Tread {
                score,
                block_type,
                count: max,
            })
            .await?;
        let data = expect(reply, "rread", |m| match m {
            Message::Rread { data } => Some(data),
            _ => None,
        })?;
        let got = Score::of(&data);
        if got != score {
            return Err(ClientError::HashMismatch { want: score, got });
        }
        Ok(data)
    }

    /// Writes a block and returns the score the server computed, after
    /// checking it against our own hash.
    pub async fn write(&self, block_type: BlockType, data: Bytes) -> Result<Score, ClientError> {
        let want = Score::of(&data);
        let reply = self.rpc(Message::Twrite { block_type, data }).await?;
        let got = expect(reply, "rwrite", |m| match m {
            Message::Rwrite { score } => Some(score),
            _ => None,
        })?;
        if got != want {
            return Err(ClientError::HashMismatch { want, got });
        }
        Ok(got)
    }

    /// Waits until every block written before this call is on stable storage.
    pub async fn sync(&self) -> Result<(), ClientError> {
        expect(self.rpc(Message::Tsync).await?, "rsync", |m| {
            matches!(m, Message::Rsync).then_some(())
        })
    }

    /// Ends the session politely; the server closes the connection.
    pub async fn goodbye(&self) -> Result<(), ClientError> {
        let mut out = BytesMut::new();
        encode_frame(self.inner.version, 0, &Message::Tgoodbye, &mut out)?;
        self.inner
            .frames
            .send(out.freeze())
            .await
            .map_err(|_| ClientError::Disconnected)
    }
}

fn expect<T>(
    reply: Message,
    expected: &'static str,
    pick: impl FnOnce(Message) -> Option<T>,
) -> Result<T, ClientError> {
    let got = reply.name();
    pick(reply).ok_or(ClientError::UnexpectedReply { expected, got })
}

impl State {
    fn release(&self, tag: u8) {
        let mut p = self.pending.lock().expect("pending lock");
        if p.waiting[tag as usize].take().is_some() {
            p.busy -= 1;
        }
        p.free_tags.push(tag);
        drop(p);
        self.tags.add_permits(1);
    }

    /// Ends the connection: every request waiting fails with `why`
    /// (a stalled connection names each request's own kind).
    fn fail_all(&self, why: Closed) {
        let mut p = self.pending.lock().expect("pending lock");
        if p.closed.is_some() {
            return;
        }
        p.closed = Some(why);
        for slot in p.waiting.iter_mut() {
            if let Some((tx, phase)) = slot.take() {
                let error = match why {
                    Closed::Gone => ClientError::Disconnected,
                    Closed::Tampered => ClientError::Tampered,
                    Closed::Stalled { after, .. } => ClientError::Timeout { phase, after },
                };
                let _ = tx.send(Err(error));
            }
        }
        p.busy = 0;
        drop(p);
        self.tags.close();
    }

    fn closed_error(&self) -> ClientError {
        let p = self.pending.lock().expect("pending lock");
        p.closed.unwrap_or(Closed::Gone).error()
    }

    /// The request in flight that has waited longest's name, if the
    /// connection has been busy and silent for the whole deadline.
    fn stalled(&self) -> Option<&'static str> {
        let p = self.pending.lock().expect("pending lock");
        if p.busy == 0 || p.alive_at.elapsed() < self.timeout {
            return None;
        }
        p.waiting.iter().flatten().map(|(_, phase)| *phase).next()
    }
}

/// The connection's reader: the socket, or an encrypted session's plaintext.
type Reader = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
/// The connection's writer, likewise.
type Writer = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// What an encrypted session proved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encrypted {
    /// The server's identity (its X25519 public key).
    pub server_key: [u8; 32],
    /// The Noise handshake hash, unique to the session.
    pub handshake_hash: [u8; crate::session::HASH_LEN],
}

/// After the server's clear version line `line` (read without its
/// newline), opens the encrypted session if `want` asks for it (and, for
/// [`ServerKey::Learn`], the server is an eventi-server): the reader and
/// writer to use from then on.
async fn encrypt(
    rd: Reader,
    wr: Writer,
    buf: &mut BytesMut,
    mut line: Vec<u8>,
    want: ServerKey,
) -> Result<(Reader, Writer, Option<Encrypted>), ClientError> {
    line.push(b'\n');
    let pinned = match want {
        ServerKey::Plain => None,
        ServerKey::Pinned(k) => Some(k),
        ServerKey::Learn => {
            if !crate::session::is_eventi_line(&line) {
                // Plain venti (plan9port's): put the line back and go on
                // in clear.
                let rest = buf.split();
                buf.extend_from_slice(&line);
                buf.extend_from_slice(&rest);
                return Ok((rd, wr, None));
            }
            None
        }
    };
    let s = crate::session::client(rd, wr, buf.split(), &line, pinned).await?;
    let proved = Encrypted {
        server_key: s.server_key,
        handshake_hash: s.handshake_hash,
    };
    Ok((s.reader, s.writer, Some(proved)))
}

/// How often a silent connection checks whether it has stalled.
const STALL_CHECK: Duration = Duration::from_millis(250);

/// Reads one whole frame during the handshake, before the reader task runs.
async fn next_frame(
    rd: &mut Reader,
    buf: &mut BytesMut,
    decoder: &FrameDecoder,
) -> Result<Frame, ClientError> {
    loop {
        if let Some(body) = decoder.decode(buf)? {
            return Ok(decode_body(body)?);
        }
        if rd.read_buf(buf).await? == 0 {
            return Err(ClientError::Disconnected);
        }
    }
}

async fn read_version_line(rd: &mut Reader, buf: &mut BytesMut) -> Result<Vec<u8>, ClientError> {
    loop {
        if let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line = buf.split_to(nl + 1);
            return Ok(line[..nl].to_vec());
        }
        if buf.len() >= version::MAX_VERSION_LINE {
            return Err(VersionError::TooLong.into());
        }
        if rd.read_buf(buf).await? == 0 {
            return Err(ClientError::Disconnected);
        }
    }
}

async fn write_loop(mut wr: Writer, mut frames: mpsc::Receiver<Bytes>) {
    let mut batch = BytesMut::with_capacity(256 * 1024);
    while let Some(first) = frames.recv().await {
        batch.extend_from_slice(&first);
        while batch.len() < 256 * 1024 {
            match frames.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if wr.write_all(&batch).await.is_err() {
            return;
        }
        batch.clear();
    }
    let _ = wr.shutdown().await;
}

async fn read_loop(inner: Arc<State>, mut rd: Reader, mut buf: BytesMut, decoder: FrameDecoder) {
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(body)) => match decode_body(body) {
                Ok(Frame { tag, message }) => {
                    let slot = {
                        let mut p = inner.pending.lock().expect("pending lock");
                        p.alive_at = Instant::now();
                        let slot = p.waiting[tag as usize].take();
                        if slot.is_some() {
                            p.busy -= 1;
                        }
                        slot
                    };
                    match slot {
                        Some((tx, _)) => {
                            inner.release(tag);
                            let _ = tx.send(Ok(message));
                        }
                        None => {
                            tracing::warn!(peer = %inner.peer, tag, "reply for a tag not in flight");
                            break;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(peer = %inner.peer, error = %e, "undecodable reply");
                    break;
                }
            },
            Ok(None) => match tokio::time::timeout(STALL_CHECK, rd.read_buf(&mut buf)).await {
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                    tracing::warn!(peer = %inner.peer, error = %e, "encrypted session broken");
                    inner.fail_all(Closed::Tampered);
                    return;
                }
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => {}
                Err(_) => {
                    if let Some(phase) = inner.stalled() {
                        tracing::warn!(peer = %inner.peer, phase, "no answer from the server; giving up the connection");
                        inner.fail_all(Closed::Stalled {
                            phase,
                            after: inner.timeout,
                        });
                        return;
                    }
                }
            },
            Err(e) => {
                tracing::warn!(peer = %inner.peer, error = %e, "bad reply frame");
                break;
            }
        }
    }
    inner.fail_all(Closed::Gone);
}
