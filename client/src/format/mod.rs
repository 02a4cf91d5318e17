//! The bytes eventi writes, pure: no I/O, so each is unit-tested with
//! golden vectors (`docs/FORMAT.md`).
//!
//! - `base32`: Crockford base32, for text people copy and type;
//! - `block`: sealing and opening a block, and the reference that names it;
//! - `capability`: one-line capabilities and the envelopes they open;
//! - `chunk`: content-defined chunking and packing of file data;
//! - `tree`: pointer blocks and the shape of a stream's tree;
//! - `dirent`: a directory's entries;
//! - `history`: history records, which `forget` leaves at a chain's head;
//! - `sealed`: the sealed, signed envelope of roots and history records;
//! - `snapshot`: snapshot roots.

pub mod base32;
pub mod block;
pub mod capability;
pub mod chunk;
pub mod dirent;
pub mod history;
pub mod sealed;
pub mod snapshot;
pub mod tree;
