//! 9P2000 (and 9P2000.u), the Plan 9 file protocol: backups served as a
//! read-only file tree that plan9port's `9p` and `9pfuse` and Linux's
//! v9fs read (`eventi serve-9p`). `messages` are the messages, `codec` their bytes (pure); `server`
//! answers them from a [`crate::browse::Browser`].

pub mod codec;
#[cfg(test)]
mod codec_tests;
pub mod messages;
pub mod server;
