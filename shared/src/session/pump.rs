//! Moving ciphertext: `len[2]` frames read and written, and the two
//! tasks of an established session, one decrypting what arrives into an
//! `AsyncRead`, one encrypting what the session writes.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;

use super::{MAX_MESSAGE, MAX_PLAIN};

/// Reads one `len[2]` frame, taking bytes already in `buf` first; `None`
/// at a clean end of stream between frames.
pub(super) async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
) -> std::io::Result<Option<Bytes>> {
    loop {
        if buf.len() >= 2 {
            let len = u16::from_be_bytes([buf[0], buf[1]]) as usize;
            if buf.len() >= 2 + len {
                buf.advance(2);
                return Ok(Some(buf.split_to(len).freeze()));
            }
        }
        buf.reserve(2 + MAX_MESSAGE);
        if rd.read_buf(buf).await? == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the connection closed inside an encrypted frame",
            ));
        }
    }
}

pub(super) fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + message.len());
    out.extend_from_slice(&(message.len() as u16).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Reads frames, decrypts them in order, and hands the plaintext on; a
/// frame that fails is handed on as an error, and ends the session.
pub(super) async fn decrypt_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    mut buf: BytesMut,
    transport: Arc<snow::StatelessTransportState>,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
) {
    // Plaintexts are cut from one large buffer at a time: one allocation
    // (and one set of fresh pages) per megabyte instead of per message.
    let mut arena = BytesMut::new();
    for nonce in 0u64.. {
        let item = match read_frame(&mut rd, &mut buf).await {
            Ok(Some(ct)) => match decrypt(&transport, nonce, &ct, &mut arena) {
                Ok(plain) => Ok(plain),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "encrypted frame {nonce} failed authentication: the bytes were changed, replayed or reordered in transit; the session is closed"
                    ),
                )),
            },
            Ok(None) => return,
            Err(e) => Err(e),
        };
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            return;
        }
    }
}

/// How much plaintext buffer [`decrypt_loop`] allocates at once.
const ARENA: usize = 1 << 20;

/// Decrypts message `nonce` into the front of `arena` and cuts it off.
pub(super) fn decrypt(
    transport: &snow::StatelessTransportState,
    nonce: u64,
    ct: &[u8],
    arena: &mut BytesMut,
) -> Result<Bytes, snow::Error> {
    if arena.capacity() < ct.len() {
        *arena = BytesMut::with_capacity(ARENA.max(ct.len()));
    }
    arena.resize(ct.len(), 0);
    match transport.read_message(nonce, ct, arena) {
        Ok(n) => {
            arena.truncate(n);
            Ok(arena.split().freeze())
        }
        Err(e) => {
            arena.clear();
            Err(e)
        }
    }
}

/// Reads plaintext the session wrote, encrypts it in messages of at most
/// [`MAX_PLAIN`] bytes, and sends them.
pub(super) async fn encrypt_loop<W: AsyncWrite + Unpin>(
    mut from: tokio::io::DuplexStream,
    mut wr: W,
    transport: Arc<snow::StatelessTransportState>,
) {
    let mut plain = vec![0u8; MAX_PLAIN];
    // The frame: its length, then the ciphertext written in place.
    let mut out = vec![0u8; 2 + MAX_MESSAGE];
    let mut nonce = 0u64;
    loop {
        let n = match from.read(&mut plain).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let Ok(len) = transport.write_message(nonce, &plain[..n], &mut out[2..]) else {
            break;
        };
        nonce += 1;
        out[..2].copy_from_slice(&(len as u16).to_be_bytes());
        if wr.write_all(&out[..2 + len]).await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

/// The decrypted stream as an `AsyncRead`.
pub(super) struct Inbound {
    pub(super) rx: mpsc::Receiver<std::io::Result<Bytes>>,
    pub(super) pending: Bytes,
}

impl AsyncRead for Inbound {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.pending.is_empty() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(b))) => self.pending = b,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.pending.len().min(out.remaining());
        out.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}
