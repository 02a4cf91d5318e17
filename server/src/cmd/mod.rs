//! One module per command.

pub mod bench;
pub mod keys;
pub mod serve;
pub mod verify;
