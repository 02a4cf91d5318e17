//! Replies waiting for a socket write. Frame headers and small messages
//! are encoded into one buffer; the data of a large Rread stays the
//! `Bytes` the store returned, so a block is never copied again on its way
//! out: the queue goes to the socket with vectored writes.

use std::io::IoSlice;

use bytes::{BufMut, Bytes, BytesMut};
use eventi_shared::codec::{encode_frame, msg_type, CodecError};
use eventi_shared::{Message, Version};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Rread data at least this long is sent from its own buffer.
const ZERO_COPY_MIN: usize = 1024;
/// Most slices per `writev` (the kernel's IOV_MAX).
const IOV_MAX: usize = 1024;

/// See the module documentation.
#[derive(Default)]
pub struct OutQueue {
    head: BytesMut,
    chunks: Vec<Bytes>,
    len: usize,
}

impl OutQueue {
    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues one frame. On error nothing is queued.
    pub fn push(&mut self, version: Version, tag: u8, message: &Message) -> Result<(), CodecError> {
        let before = self.head.len();
        match message {
            Message::Rread { data } if data.len() >= ZERO_COPY_MIN => {
                let body = 2 + data.len();
                match version {
                    Version::V02 => {
                        let len =
                            u16::try_from(body).map_err(|_| CodecError::TooLargeForV02(body))?;
                        self.head.put_u16(len);
                    }
                    Version::V04 => self.head.put_u32(body as u32),
                }
                self.head.put_u8(msg_type::RREAD);
                self.head.put_u8(tag);
                self.len += self.head.len() - before + data.len();
                self.chunks.push(self.head.split().freeze());
                self.chunks.push(data.clone());
            }
            _ => {
                encode_frame(version, tag, message, &mut self.head)?;
                self.len += self.head.len() - before;
            }
        }
        Ok(())
    }

    /// Writes everything queued and empties the queue.
    pub async fn write_to<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> std::io::Result<()> {
        if !self.head.is_empty() {
            self.chunks.push(self.head.split().freeze());
        }
        let mut slices: Vec<IoSlice<'_>> = self.chunks.iter().map(|c| IoSlice::new(c)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let n = rest.len().min(IOV_MAX);
            let written = w.write_vectored(&rest[..n]).await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, written);
        }
        drop(slices);
        self.chunks.clear();
        self.len = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventi_shared::codec::{decode_body, FrameDecoder};

    #[tokio::test]
    async fn queued_frames_decode_in_order_both_versions() {
        for version in [Version::V02, Version::V04] {
            let mut q = OutQueue::default();
            let big = Bytes::from(vec![7u8; 5000]);
            let msgs = [
                Message::Rping,
                Message::Rread { data: big.clone() },
                Message::Rread {
                    data: Bytes::from_static(b"small"),
                },
                Message::Rsync,
                Message::Rread { data: big },
            ];
            for (tag, m) in msgs.iter().enumerate() {
                q.push(version, tag as u8, m).unwrap();
            }
            let mut wire = Vec::new();
            let expected_len = q.len();
            q.write_to(&mut wire).await.unwrap();
            assert_eq!(wire.len(), expected_len);
            assert!(q.is_empty());
            let mut buf = BytesMut::from(&wire[..]);
            let dec = FrameDecoder::new(version, 1 << 20);
            for (tag, m) in msgs.iter().enumerate() {
                let f = decode_body(dec.decode(&mut buf).unwrap().unwrap()).unwrap();
                assert_eq!((f.tag, &f.message), (tag as u8, m));
            }
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn v02_refuses_an_rread_too_large_and_queues_nothing() {
        let mut q = OutQueue::default();
        let huge = Message::Rread {
            data: Bytes::from(vec![0u8; 70_000]),
        };
        assert!(q.push(Version::V02, 1, &huge).is_err());
        assert!(q.is_empty());
    }
}
