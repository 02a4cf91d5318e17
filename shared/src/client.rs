//! A pipelined async venti client.
//!
//! One connection carries up to 256 requests at once (tags are one byte).
//! Any number of tasks may share a [`VentiClient`] (it is cheap to clone):
//! each request takes a free tag, its frame goes to a writer task that
//! coalesces frames into few `write`s, and a reader task hands each reply
//! to the request with the same tag. A tag is reused only after its reply
//! has arrived, even if the request that took it was cancelled.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::auth;
use crate::codec::{decode_body, encode_frame, CodecError, Frame, FrameDecoder, Message};
use crate::version::{self, Version, VersionError};
use crate::{BlockType, Score};

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
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            offer: "04:02".into(),
            uid: "anonymous".into(),
            max_frame: 16 << 20,
            write_key: None,
        }
    }
}

const TAGS: usize = 256;

type ReplySlot = oneshot::Sender<Result<Message, ClientError>>;

struct Pending {
    free_tags: Vec<u8>,
    waiting: Vec<Option<ReplySlot>>,
    closed: bool,
}

/// What the client handles share. Dropping the last handle drops `frames`,
/// which ends the writer task and closes the connection.
struct Inner {
    version: Version,
    sid: String,
    peer: SocketAddr,
    frames: mpsc::Sender<Bytes>,
    state: Arc<State>,
}

/// What the reader task needs: the requests waiting for replies.
struct State {
    peer: SocketAddr,
    tags: Semaphore,
    pending: Mutex<Pending>,
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
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?;
        let (mut rd, mut wr) = stream.into_split();
        wr.write_all(format!("venti-{}-eventi\n", options.offer).as_bytes())
            .await?;
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let line = read_version_line(&mut rd, &mut buf).await?;
        let offered: Vec<Version> = options
            .offer
            .split(':')
            .filter_map(Version::from_token)
            .collect();
        let version = version::negotiate_among(&line, &offered)?;

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
        let decoder = FrameDecoder::new(version, options.max_frame);
        let sid = match next_frame(&mut rd, &mut buf, &decoder).await?.message {
            Message::Rhello { sid, .. } => sid,
            Message::Rerror { error } => return Err(ClientError::Server(error)),
            other => {
                return Err(ClientError::UnexpectedReply {
                    expected: "rhello",
                    got: other.name(),
                })
            }
        };
        if let Some(key) = &options.write_key {
            let challenge = auth::parse_challenge(&sid).ok_or(ClientError::NoAuth)?;
            let (key, signature) = auth::sign(key, &challenge, version.as_str(), &options.uid);
            let mut out = BytesMut::new();
            encode_frame(version, 0, &Message::Tauth0 { key, signature }, &mut out)?;
            wr.write_all(&out).await?;
            match next_frame(&mut rd, &mut buf, &decoder).await?.message {
                Message::Rauth0 => {}
                Message::Rerror { error } => return Err(ClientError::Server(error)),
                other => {
                    return Err(ClientError::UnexpectedReply {
                        expected: "rauth0",
                        got: other.name(),
                    })
                }
            }
        }

        let (frames_tx, frames_rx) = mpsc::channel(TAGS);
        let state = Arc::new(State {
            peer,
            tags: Semaphore::new(TAGS),
            pending: Mutex::new(Pending {
                free_tags: (0..=255u8).rev().collect(),
                waiting: (0..TAGS).map(|_| None).collect(),
                closed: false,
            }),
        });
        let inner = Arc::new(Inner {
            version,
            sid,
            peer,
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

    /// Sends one request and waits for its reply. Rerror comes back as
    /// [`ClientError::Server`].
    pub async fn rpc(&self, request: Message) -> Result<Message, ClientError> {
        let state = &self.inner.state;
        let permit = state
            .tags
            .acquire()
            .await
            .map_err(|_| ClientError::Disconnected)?;
        let (tx, rx) = oneshot::channel();
        let tag = {
            let mut p = state.pending.lock().expect("pending lock");
            if p.closed {
                return Err(ClientError::Disconnected);
            }
            let tag = p.free_tags.pop().expect("a permit guarantees a free tag");
            p.waiting[tag as usize] = Some(tx);
            tag
        };
        // The reader returns the permit with the tag, when the reply arrives.
        permit.forget();
        let mut out = BytesMut::new();
        if let Err(e) = encode_frame(self.inner.version, tag, &request, &mut out) {
            state.release(tag);
            return Err(e.into());
        }
        if self.inner.frames.send(out.freeze()).await.is_err() {
            return Err(ClientError::Disconnected);
        }
        match rx.await {
            Ok(Ok(Message::Rerror { error })) => Err(ClientError::Server(error)),
            Ok(reply) => reply,
            Err(_) => Err(ClientError::Disconnected),
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
        p.waiting[tag as usize] = None;
        p.free_tags.push(tag);
        drop(p);
        self.tags.add_permits(1);
    }

    fn fail_all(&self) {
        let mut p = self.pending.lock().expect("pending lock");
        p.closed = true;
        for slot in p.waiting.iter_mut() {
            if let Some(tx) = slot.take() {
                let _ = tx.send(Err(ClientError::Disconnected));
            }
        }
        drop(p);
        self.tags.close();
    }
}

/// Reads one whole frame during the handshake, before the reader task runs.
async fn next_frame(
    rd: &mut OwnedReadHalf,
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

async fn read_version_line(
    rd: &mut OwnedReadHalf,
    buf: &mut BytesMut,
) -> Result<Vec<u8>, ClientError> {
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

async fn write_loop(mut wr: OwnedWriteHalf, mut frames: mpsc::Receiver<Bytes>) {
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

async fn read_loop(
    inner: Arc<State>,
    mut rd: OwnedReadHalf,
    mut buf: BytesMut,
    decoder: FrameDecoder,
) {
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(body)) => match decode_body(body) {
                Ok(Frame { tag, message }) => {
                    let slot = {
                        let mut p = inner.pending.lock().expect("pending lock");
                        p.waiting[tag as usize].take()
                    };
                    match slot {
                        Some(tx) => {
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
            Ok(None) => match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            Err(e) => {
                tracing::warn!(peer = %inner.peer, error = %e, "bad reply frame");
                break;
            }
        }
    }
    inner.fail_all();
}
