//! The eventi backup client as a library. The `eventi` binary
//! (`src/main.rs`, one file per command in `src/cmd/`) is its CLI.
//!
//! - `format`: the bytes eventi writes, pure (blocks, chunks, trees,
//!   directories, snapshot roots);
//! - `keys`: the key file, its passphrase, and keys typed by power;
//! - `store`: where blocks go (one trait; the embedded store, venti
//!   servers, the circle of several with its copies) and the destination
//!   a home backs up to;
//! - `home`: eventi's directories, `config.toml`, the caches and their locks;
//! - `stream` and `walk`: reading and writing trees through a store, and
//!   the one walker over a snapshot's entries and blocks;
//! - the pipelines: `backup` and `restore`, with `progress` and `fsmeta`
//!   (file metadata both need), and `check` (what each server of the
//!   circle lacks, and its repair);
//! - `share`: capabilities made (an envelope sealed into the destination)
//!   and opened (read back with nothing but the line, chains walked);
//! - `machines`: the owner's list of write-only machines, kept on the
//!   servers too so that a recovered home finds their chains;
//! - `forget`: which snapshots a retention policy keeps, and the history
//!   record that removes the others from the chain;
//! - `browse`: snapshots as a read-only file tree, read on demand, for
//!   the FUSE mount and the 9P server (`ninep`: its codec and server);
//! - `repo`: an opened home: its keys, its destination, its chain of roots.

pub mod backup;
pub mod browse;
pub mod check;
pub mod forget;
pub mod format;
pub mod fsmeta;
pub mod home;
pub mod keys;
pub mod machines;
pub mod ninep;
pub mod progress;
pub mod prune;
pub mod repo;
pub mod restore;
pub mod share;
pub mod store;
pub mod stream;
pub mod walk;
