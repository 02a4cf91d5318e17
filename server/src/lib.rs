//! eventi-server: a venti server on RocksDB.
//!
//! Blocks are kept by the `eventi-store` crate. `conn` serves one venti
//! connection, `server` accepts connections and shuts down gracefully (`shutdown`
//! is the signal every task waits on), `state` is what they share,
//! `http` serves metrics, `admin` manages write keys through the admin
//! socket, `config` holds the settings, `identity` the server's key pair. The binary's commands live in
//! `src/cmd/`.

pub mod admin;
pub mod compactor;
pub mod config;
pub mod conn;
pub mod http;
pub mod identity;
pub mod keys;
pub mod metrics;
pub mod out_queue;
pub mod server;
pub mod shutdown;
pub mod state;
