//! The eventi backup client as a library: formats (`block`, `chunk`,
//! `tree`, `dirent`, `snapshot`), the key file, the stores backups go to,
//! and the engines of `backup` and `restore`. The `eventi` binary
//! (`src/main.rs`) is its CLI.

pub mod backup;
pub mod block;
pub mod cache;
pub mod chunk;
pub mod config;
pub mod destination;
pub mod dirent;
pub mod exclude;
pub mod fsmeta;
pub mod home;
pub mod keys;
pub mod lockfile;
pub mod progress;
pub mod repo;
pub mod restore;
pub mod snapshot;
pub mod store;
pub mod tree;
pub mod walk;
