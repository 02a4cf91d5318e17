//! `config.toml`: where backups go and how long a server may be silent,
//! and the global `--timeout` that overrides it.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

/// `config.toml`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Venti servers to back up to; empty means the embedded store.
    #[serde(default)]
    pub servers: Vec<String>,
    /// How long a server may stay silent ("60s", "2m"; default 60 s):
    /// connecting, each handshake step, and while requests are in flight.
    #[serde(default)]
    pub timeout: Option<String>,
}

/// `--timeout` from the command line, which wins over the config's.
static TIMEOUT_OVERRIDE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

/// Sets the server deadline for this process (the global `--timeout`);
/// call once, before opening a repo.
pub fn override_timeout(timeout: Duration) {
    let _ = TIMEOUT_OVERRIDE.set(timeout);
}

impl Config {
    /// The server deadline: `--timeout`, else the config's, else the default.
    pub fn timeout(&self) -> anyhow::Result<Duration> {
        if let Some(t) = TIMEOUT_OVERRIDE.get() {
            return Ok(*t);
        }
        match &self.timeout {
            Some(t) => eventi_shared::time::parse_duration(t)
                .map_err(|e| anyhow::anyhow!("config timeout: {e}")),
            None => Ok(eventi_shared::client::DEFAULT_TIMEOUT),
        }
    }
}

impl Config {
    /// Reads the config file; a missing one is the default config.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("in {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}
