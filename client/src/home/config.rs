//! `config.toml`: where backups go and how long a server may be silent,
//! and the global `--timeout` that overrides it.

use std::path::Path;
use std::time::Duration;

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

/// Why the config could not be used. Messages name the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a valid config.
    #[error("in {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, with its line.
        source: toml::de::Error,
    },
    /// The `timeout` setting is not a duration.
    #[error("config timeout: {0}")]
    Timeout(String),
}

impl Config {
    /// The server deadline: `--timeout`, else the config's, else the default.
    pub fn timeout(&self) -> Result<Duration, ConfigError> {
        if let Some(t) = TIMEOUT_OVERRIDE.get() {
            return Ok(*t);
        }
        match &self.timeout {
            Some(t) => eventi_shared::time::parse_duration(t).map_err(ConfigError::Timeout),
            None => Ok(eventi_shared::client::DEFAULT_TIMEOUT),
        }
    }
}

impl Config {
    /// Reads the config file; a missing one is the default config.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = || path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|source| ConfigError::Parse {
                path: name(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read {
                path: name(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_load_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Config::load(&dir.path().join("none.toml")).unwrap();
        assert!(missing.servers.is_empty());
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "servers = [\"127.0.0.1:17034\"]\ntimeout = \"5s\"\n").unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.servers, ["127.0.0.1:17034"]);
        // (No test in this binary sets the process-wide --timeout.)
        assert_eq!(config.timeout().unwrap(), Duration::from_secs(5));
        std::fs::write(&path, "servers = 3\n").unwrap();
        let err = Config::load(&path).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("config.toml"), "{err}");
        let bad = Config {
            timeout: Some("soon".into()),
            ..Config::default()
        };
        assert!(matches!(bad.timeout(), Err(ConfigError::Timeout(_))));
    }
}
