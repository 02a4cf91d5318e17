//! One module per command.

pub mod bench;
pub mod serve;
pub mod verify;
