//! Encrypted sessions (eventi extension; bytes in `docs/PROTOCOL.md`,
//! "Encrypted sessions"): the Noise protocol framework's NX pattern
//! through the `snow` crate, on the same port as plain venti.
//!
//! Both ends write their venti version line first, in clear, as venti
//! does. A client that wants an encrypted session reads the server's
//! line, then writes [`MARKER`] instead of its own, and the Noise
//! handshake follows (`-> e`, `<- e, ee, s, es`), each message framed as
//! `len[2]` and the message. The prologue binds the server's clear
//! version line, so a rewritten line fails the handshake. The server's
//! static key (its identity, `identity.rs`) arrives encrypted in the
//! second message; the client compares it with the key it pinned. Then
//! every frame both ways is `len[2]` and an AEAD ciphertext (AES-256-GCM
//! or ChaCha20-Poly1305, `cipher.rs`; at most [`MAX_MESSAGE`] bytes)
//! under keys from the ephemeral
//! exchange (forward secrecy), with its nonce counted, never sent: a
//! changed, dropped, reordered or replayed frame fails. Inside, plain
//! venti runs unchanged from its version line on.
//!
//! [`Session`] hands the venti code an ordinary reader and writer; two
//! tasks move the ciphertext (`pump.rs`).

mod cipher;
mod pump;
#[cfg(test)]
mod tests;

pub use cipher::{
    has_fast_aes, is_eventi_line, server_comment, Cipher, AES_COMMENT, COMMENT, MARKER, MARKER_AES,
    PATTERN, PATTERN_AES,
};

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use pump::{decrypt_loop, encrypt_loop, frame, read_frame, Inbound};

/// What the prologue starts with; the server's clear version line follows.
pub const PROLOGUE_LABEL: &[u8] = b"eventi session v1\n";
/// The largest Noise message (the frame's body).
pub const MAX_MESSAGE: usize = 65535;
/// Plaintext bytes per transport message.
pub const MAX_PLAIN: usize = MAX_MESSAGE - 16;
/// Bytes of the handshake hash (BLAKE2s).
pub const HASH_LEN: usize = 32;

/// Why an encrypted session failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The connection failed or closed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The handshake did not complete: tampered with, or not a Noise peer.
    #[error("encrypted session handshake failed: {0}")]
    Handshake(String),
    /// The server proved another identity than the one pinned.
    #[error("the server's identity is {got}, not {expected} as pinned: the server's key changed, or someone is between you and the server. Check the fingerprint with the server's operator (`eventi-server identity` prints it) before you trust a new key")]
    WrongServer {
        /// The pinned key's fingerprint.
        expected: String,
        /// The presented key's fingerprint.
        got: String,
    },
}

/// An established session: plaintext reader and writer for the venti
/// code, and what the handshake proved.
pub struct Session {
    /// Decrypted bytes from the peer. A frame that fails authentication
    /// reads as an `InvalidData` error that says so.
    pub reader: Box<dyn AsyncRead + Unpin + Send>,
    /// Bytes to encrypt and send.
    pub writer: Box<dyn AsyncWrite + Unpin + Send>,
    /// The Noise handshake hash: unique to this session, for binding
    /// the write-key authentication to it.
    pub handshake_hash: [u8; HASH_LEN],
    /// The server's static key (its identity).
    pub server_key: [u8; 32],
    /// The transport cipher.
    pub cipher: Cipher,
}

fn params(cipher: Cipher) -> snow::params::NoiseParams {
    cipher
        .pattern()
        .parse()
        .expect("a valid Noise pattern name")
}

/// A handshake builder whose primitives come from `ring` where it has
/// them (the AEADs in assembly: ChaCha20-Poly1305 at 2.3 GB/s a core
/// here against 1.0 for the portable crate, AES-256-GCM at 7 against
/// 1.2; `docs/PERFORMANCE.md`), the rest (X25519, BLAKE2s) from the
/// RustCrypto crates. The bytes on the wire are the same either way.
fn builder(cipher: Cipher) -> snow::Builder<'static> {
    use snow::resolvers::{DefaultResolver, FallbackResolver, RingResolver};
    snow::Builder::with_resolver(
        params(cipher),
        Box::new(FallbackResolver::new(
            Box::new(RingResolver),
            Box::new(DefaultResolver),
        )),
    )
}

fn prologue(server_version_line: &[u8]) -> Vec<u8> {
    [PROLOGUE_LABEL, server_version_line].concat()
}

fn noise(e: snow::Error) -> SessionError {
    SessionError::Handshake(e.to_string())
}

/// The client's side, after it read the server's clear version line
/// `server_line` (with its newline); `buf` holds what arrived after it.
/// With `pinned`, a server proving another identity is refused before
/// anything else is sent.
pub async fn client<R, W>(
    mut rd: R,
    mut wr: W,
    mut buf: BytesMut,
    server_line: &[u8],
    pinned: Option<[u8; 32]>,
) -> Result<Session, SessionError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let prologue = prologue(server_line);
    let cipher = Cipher::for_server(server_line);
    let mut hs = builder(cipher)
        .prologue(&prologue)
        .build_initiator()
        .map_err(noise)?;
    let mut msg = vec![0u8; MAX_MESSAGE];
    let n = hs.write_message(&[], &mut msg).map_err(noise)?;
    let mut first = cipher.marker().to_vec();
    first.extend_from_slice(&frame(&msg[..n]));
    wr.write_all(&first).await?;
    let reply = read_frame(&mut rd, &mut buf).await?.ok_or_else(|| {
        SessionError::Handshake(
            "the server closed the connection (it may not offer encrypted sessions)".into(),
        )
    })?;
    hs.read_message(&reply, &mut msg).map_err(noise)?;
    let server_key: [u8; 32] = hs
        .get_remote_static()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| SessionError::Handshake("no server key".into()))?;
    if let Some(expected) = pinned {
        if expected != server_key {
            return Err(SessionError::WrongServer {
                expected: crate::identity::fingerprint(&expected),
                got: crate::identity::fingerprint(&server_key),
            });
        }
    }
    established(hs, rd, wr, buf, server_key, cipher)
}

/// The server's side, after it wrote `our_line` in clear and read the
/// client's marker, which asked for `cipher`; `buf` holds what arrived
/// after the marker.
pub async fn server<R, W>(
    mut rd: R,
    mut wr: W,
    mut buf: BytesMut,
    our_line: &[u8],
    secret: &[u8; 32],
    cipher: Cipher,
) -> Result<Session, SessionError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let prologue = prologue(our_line);
    let mut hs = builder(cipher)
        .prologue(&prologue)
        .local_private_key(secret)
        .build_responder()
        .map_err(noise)?;
    let first = read_frame(&mut rd, &mut buf)
        .await?
        .ok_or_else(|| SessionError::Handshake("the client left".into()))?;
    let mut msg = vec![0u8; MAX_MESSAGE];
    hs.read_message(&first, &mut msg).map_err(noise)?;
    let n = hs.write_message(&[], &mut msg).map_err(noise)?;
    wr.write_all(&frame(&msg[..n])).await?;
    let public = x25519_public(secret);
    established(hs, rd, wr, buf, public, cipher)
}

fn x25519_public(secret: &[u8; 32]) -> [u8; 32] {
    // snow keeps the public half to itself; derive it the same way.
    let resolver = snow::resolvers::DefaultResolver;
    use snow::resolvers::CryptoResolver;
    let mut dh = resolver
        .resolve_dh(&snow::params::DHChoice::Curve25519)
        .expect("X25519");
    dh.set(secret);
    dh.pubkey().try_into().expect("32 bytes")
}

fn established<R, W>(
    hs: snow::HandshakeState,
    rd: R,
    wr: W,
    buf: BytesMut,
    server_key: [u8; 32],
    cipher: Cipher,
) -> Result<Session, SessionError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let handshake_hash: [u8; HASH_LEN] = hs
        .get_handshake_hash()
        .try_into()
        .map_err(|_| SessionError::Handshake("unexpected hash length".into()))?;
    let transport = Arc::new(hs.into_stateless_transport_mode().map_err(noise)?);
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(decrypt_loop(rd, buf, Arc::clone(&transport), tx));
    let (app, pump) = tokio::io::duplex(4 * MAX_MESSAGE);
    tokio::spawn(encrypt_loop(pump, wr, transport));
    Ok(Session {
        reader: Box::new(Inbound {
            rx,
            pending: Bytes::new(),
        }),
        writer: Box::new(app),
        handshake_hash,
        server_key,
        cipher,
    })
}
