//! The venti wire protocol, shared by eventi's server and client.
//!
//! Everything except [`client`] is pure: bytes in, typed values out, no I/O,
//! so it can be unit-tested, property-tested and fuzzed in isolation. The
//! layout follows plan9port's libventi, whose source is the authority on
//! every byte: `score` (SHA-1 addresses), `block_type` (wire/disk types),
//! `version` (the text line both ends exchange first), `codec` (messages and
//! their 2- or 4-byte framing), `errors` (the Rerror texts clients act
//! on), `public_key` (the write-key line servers authorize), `identity`
//! (a server's X25519 identity line and fingerprint), `session` (encrypted
//! sessions: the Noise handshake and framing, I/O like `client`), and `client` (a pipelined async client); `size` and `time` format
//! byte counts and dates the same way in every binary, and `cli_docs`
//! makes both binaries' shell completions and manual pages.

pub mod auth;
pub mod block_type;
pub mod cli_docs;
pub mod client;
pub mod codec;
pub mod errors;
pub mod head;
pub mod identity;
pub mod public_key;
pub mod score;
pub mod session;
pub mod size;
pub mod time;
pub mod version;

pub use block_type::BlockType;
pub use client::{ClientError, VentiClient};
pub use codec::{CodecError, Message};
pub use score::Score;
pub use version::Version;

/// Largest block plan9port's venti stores (its `VtMaxLumpSize`), and the
/// limit for every block on a protocol `02` connection.
pub const MAX_BLOCK_V02: usize = 56 * 1024;

/// Longest `s` string the protocol allows (libventi's `VtMaxStringSize`).
pub const MAX_STRING: usize = 1024;
