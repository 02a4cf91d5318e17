//! Server settings: a TOML file (`--config`) for everything, command-line
//! flags for the common ones (flags win).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use eventi_store::StoreOptions;

/// Everything `eventi-server serve` can be told.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Data directory.
    pub data: Option<PathBuf>,
    /// Address for venti clients.
    pub listen: SocketAddr,
    /// Address for `/metrics` and `/healthz`; empty to turn HTTP off.
    pub http: String,
    /// Names, besides the listener's address and `localhost`, that an
    /// HTTP request's `Host` may give (say, the name a Prometheus on
    /// another host scrapes); any other is refused (DNS rebinding).
    pub http_allowed_hosts: Vec<String>,
    /// `text` or `json` log lines on stderr.
    pub log_format: LogFormat,
    /// Protection against clients that misbehave or overload the server.
    pub limits: Limits,
    /// Who may read and write.
    pub auth: Auth,
    /// Storage engine settings.
    pub storage: StoreOptions,
    /// Giving space back: the grace period and compaction.
    pub prune: Prune,
}

/// The `[prune]` table: what keys' prunes may let go of, and how the
/// server gives the space back.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Prune {
    /// Seconds during which a block stored (or marked) by a key is never
    /// let go by that key's prune: it covers a backup's blocks that are
    /// written but not yet under a head.
    pub grace_secs: u64,
    /// Segments whose live bytes fall below this fraction are copied
    /// forward and removed; the others get holes punched over their dead
    /// records.
    pub compact_live_below: f64,
    /// Bytes per second compaction copies at most (0: no limit).
    pub compact_bytes_per_second: u64,
    /// Seconds between compaction passes (one also follows every prune);
    /// 0 turns background compaction off (`eventi-server compact` then
    /// gives the space back, on the stopped server).
    pub compact_interval_secs: u64,
}

impl Default for Prune {
    fn default() -> Self {
        Prune {
            grace_secs: 24 * 3600,
            compact_live_below: 0.3,
            compact_bytes_per_second: 64 << 20,
            compact_interval_secs: 3600,
        }
    }
}

impl Prune {
    /// The compaction settings.
    pub fn compact_options(&self) -> eventi_store::compact::CompactOptions {
        eventi_store::compact::CompactOptions {
            live_below: self.compact_live_below,
            bytes_per_second: (self.compact_bytes_per_second > 0)
                .then_some(self.compact_bytes_per_second),
            stop: None,
        }
    }
}

/// Access for sessions that never authenticate (every plan9port tool).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    /// Bytes anonymous writers may store in all: a size ("10GiB"),
    /// "unlimited", or absent for none (anonymous writes refused).
    pub anonymous_write_quota: Option<String>,
    /// Whether sessions without a key may read.
    pub anonymous_reads: bool,
    /// What needs an encrypted session: `keyed-writes` (the default:
    /// authenticating with a write key), `writes` (every write, anonymous
    /// ones too), `reads`, `all`, or `none`. plan9port's tools cannot
    /// encrypt: whatever is required here is refused to them.
    pub require_encryption: RequireEncryption,
}

/// What a server takes only in an encrypted session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RequireEncryption {
    /// Nothing: plain venti sessions may do all they may do today.
    None,
    /// Tauth0: a write key authenticates only in an encrypted session.
    #[default]
    KeyedWrites,
    /// Every write (and Tauth0).
    Writes,
    /// Every read.
    Reads,
    /// Everything but the handshake.
    All,
}

impl RequireEncryption {
    /// Whether a plain session is refused Tauth0.
    pub fn keyed_writes(self) -> bool {
        matches!(self, Self::KeyedWrites | Self::Writes | Self::All)
    }

    /// Whether a plain session is refused writes.
    pub fn writes(self) -> bool {
        matches!(self, Self::Writes | Self::All)
    }

    /// Whether a plain session is refused reads.
    pub fn reads(self) -> bool {
        matches!(self, Self::Reads | Self::All)
    }
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            anonymous_write_quota: None,
            anonymous_reads: true,
            require_encryption: RequireEncryption::default(),
        }
    }
}

impl Auth {
    /// The anonymous quota in bytes (`u64::MAX` for unlimited, `None` for none).
    pub fn anonymous_quota(&self) -> anyhow::Result<Option<u64>> {
        match self.anonymous_write_quota.as_deref() {
            None => Ok(None),
            Some("unlimited") => Ok(Some(u64::MAX)),
            Some(size) => eventi_shared::size::parse_size(size)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("auth.anonymous_write_quota: {e}")),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data: None,
            listen: "127.0.0.1:17034".parse().expect("valid address"),
            http: "127.0.0.1:17035".into(),
            http_allowed_hosts: Vec::new(),
            log_format: LogFormat::Text,
            limits: Limits::default(),
            auth: Auth::default(),
            storage: StoreOptions::default(),
            prune: Prune::default(),
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Per-connection and server-wide limits.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// Connections from one remote address at once.
    pub max_connections_per_address: usize,
    /// Requests one connection may have in flight (at most 256: tags are a byte).
    pub max_in_flight: usize,
    /// Largest block on a protocol `04` connection (`02` is fixed at 56 KiB).
    pub max_block_v04: usize,
    /// Seconds allowed for the version line and hello.
    pub handshake_timeout_secs: u64,
    /// Seconds a connection with nothing in flight may stay silent.
    pub idle_timeout_secs: u64,
    /// Seconds allowed for the rest of a frame once it has started.
    pub frame_timeout_secs: u64,
    /// Seconds a reply may wait for the peer to read before the connection is dropped.
    pub write_timeout_secs: u64,
    /// Seconds that shutdown waits for requests in flight.
    pub shutdown_grace_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_connections_per_address: 64,
            max_in_flight: 256,
            max_block_v04: 1 << 20,
            handshake_timeout_secs: 30,
            idle_timeout_secs: 3600,
            frame_timeout_secs: 60,
            write_timeout_secs: 60,
            shutdown_grace_secs: 10,
        }
    }
}

impl Config {
    /// Reads a config file; unknown keys are errors so typos do not pass silently.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }

    /// Checks values that would make the server misbehave.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=256).contains(&self.limits.max_in_flight),
            "limits.max_in_flight must be 1..=256 (venti tags are one byte)"
        );
        anyhow::ensure!(
            self.limits.max_block_v04 >= eventi_shared::MAX_BLOCK_V02
                && self.limits.max_block_v04 <= eventi_store::MAX_RECORD_DATA,
            "limits.max_block_v04 must be between 56 KiB and 64 MiB"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.prune.compact_live_below),
            "prune.compact_live_below must be between 0 and 1"
        );
        anyhow::ensure!(
            self.limits.max_connections >= 1,
            "limits.max_connections must be at least 1"
        );
        anyhow::ensure!(
            self.limits.max_connections_per_address >= 1,
            "limits.max_connections_per_address must be at least 1"
        );
        self.auth.anonymous_quota()?;
        Ok(())
    }
}
