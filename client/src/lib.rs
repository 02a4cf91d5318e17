//! The eventi backup client as a library: the key file and the block
//! stores backups go to. The `eventi` binary (`src/main.rs`) is its CLI.

pub mod block;
pub mod chunk;
pub mod dirent;
pub mod home;
pub mod keyfile;
pub mod passphrase;
pub mod store;
pub mod tree;
