//! `config.toml`: where backups go (the circle of servers, and on how
//! many of them every block must be), how long a server may be silent,
//! and the global `--timeout` that overrides it. `eventi server add` and
//! `remove` edit the file in place, keeping its comments.

use std::path::Path;
use std::time::Duration;

use eventi_shared::client::ServerKey;

/// `config.toml`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Venti servers to back up to (the circle); empty means the embedded
    /// store. Each is `"host:port"` or `{ name = "...", address = "host:port" }`.
    #[serde(default)]
    pub servers: Vec<ServerSpec>,
    /// On how many servers every block must be stored and synced for a
    /// backup to succeed (default: all of them).
    #[serde(default)]
    pub copies: Option<usize>,
    /// The name of the head this home keeps on the servers (default
    /// `default`): machines sharing a key and a head name share a chain.
    #[serde(default)]
    pub head: Option<String>,
    /// How long a server may stay silent ("60s", "2m"; default 60 s):
    /// connecting, each handshake step, and while requests are in flight.
    #[serde(default)]
    pub timeout: Option<String>,
    /// How long a slow server (one that keeps answering, but takes blocks
    /// more slowly than the others) may hold up a backup that `copies`
    /// other servers keep up with, before it is left behind ("10s").
    #[serde(default)]
    pub lag: Option<String>,
    /// Write-only machines this key exported a key to (`eventi key export
    /// --write-only`): `snapshots --all` lists their chains.
    #[serde(default)]
    pub machines: Vec<Machine>,
    /// For the embedded store: how long a block stored stays safe from
    /// `eventi prune` ("24h" by default; a server has its own setting).
    #[serde(default)]
    pub prune_grace: Option<String>,
    /// How much decrypted data `eventi mount` and `eventi serve-9p` keep
    /// in memory ("32MiB" by default).
    #[serde(default)]
    pub mount_cache: Option<String>,
    /// What `eventi backup` backs up when given no path (absolute paths):
    /// a scheduled backup needs no arguments.
    #[serde(default)]
    pub paths: Vec<std::path::PathBuf>,
    /// Patterns every backup leaves out, as `--exclude` (a name glob, or a
    /// path glob if it has a '/'), besides those on the command line.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Tags every snapshot gets, as `--tag`, besides those on the command
    /// line.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A write-only machine of the owner's, as the config names it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// What the owner calls it.
    pub name: String,
    /// Its public write key line (its heads are kept under it).
    pub key: String,
    /// Its head name, if not `default`.
    #[serde(default)]
    pub head: Option<String>,
}

/// One server of the circle as the config names it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum ServerSpec {
    /// Only an address; the server's name is its address.
    Address(String),
    /// A name for messages and `eventi server remove`, and the address.
    Named {
        /// What the user calls it.
        name: String,
        /// `host:port`.
        address: String,
        /// The server's pinned identity (`eventi-x25519 <hex>`): sessions
        /// are encrypted and a server proving another is refused.
        #[serde(default)]
        key: Option<String>,
        /// Sessions in clear, plain venti (`server add --plain`): for a
        /// server reached only through a tunnel already trusted, where
        /// encrypting twice costs CPU for nothing.
        #[serde(default)]
        plain: bool,
    },
}

impl ServerSpec {
    /// What the user calls it (its address unless it was given a name).
    pub fn name(&self) -> &str {
        match self {
            ServerSpec::Address(a) => a,
            ServerSpec::Named { name, .. } => name,
        }
    }

    /// `host:port`.
    pub fn address(&self) -> &str {
        match self {
            ServerSpec::Address(a) | ServerSpec::Named { address: a, .. } => a,
        }
    }

    /// The pinned identity's line, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ServerSpec::Named { key: Some(k), .. } => Some(k),
            _ => None,
        }
    }

    /// How sessions with it are opened: encrypted to the pinned identity,
    /// or (none pinned) encrypted to whatever identity an eventi-server
    /// proves, plain with plain venti.
    pub fn session_key(&self) -> Result<ServerKey, ConfigError> {
        if let ServerSpec::Named { plain: true, .. } = self {
            return Ok(ServerKey::Plain);
        }
        match self.key() {
            Some(line) => eventi_shared::identity::parse(line)
                .map(ServerKey::Pinned)
                .map_err(|e| ConfigError::Edit(format!("server {}: key: {e}", self.name()))),
            None => Ok(ServerKey::Learn),
        }
    }
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
    #[error("reading {path}: {cause}")]
    Read {
        /// The file.
        path: String,
        /// The OS error (in the message, not a separate source: error
        /// chains would print it twice).
        cause: std::io::Error,
    },
    /// The file is not a valid config.
    #[error("in {path}: {cause}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, with its line (in the message only, as above).
        cause: toml::de::Error,
    },
    /// The `timeout` setting is not a duration.
    #[error("config timeout: {0}")]
    Timeout(String),
    /// The `lag` setting is not a duration.
    #[error("config lag: {0}")]
    Lag(String),
    /// The `prune_grace` setting is not a duration.
    #[error("config prune_grace: {0}")]
    PruneGrace(String),
    /// The `mount_cache` setting is not a size.
    #[error("config mount_cache: {0}")]
    MountCache(String),
    /// `copies` asks for more servers than the circle has, or for none.
    #[error("config copies = {copies}, but the circle has {servers} server(s)")]
    Copies {
        /// What was asked.
        copies: usize,
        /// Servers configured.
        servers: usize,
    },
    /// Two servers share a name or an address.
    #[error("config names server {0:?} twice")]
    Duplicate(String),
    /// An edit could not be made (`eventi server add`/`remove`).
    #[error("{0}")]
    Edit(String),
    /// The file could not be written.
    #[error("writing {path}: {cause}")]
    Write {
        /// The file.
        path: String,
        /// The OS error (in the message only, as above).
        cause: std::io::Error,
    },
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
    /// On how many servers every block must be (all of them by default),
    /// checked against the circle's size.
    pub fn copies(&self) -> Result<usize, ConfigError> {
        let servers = self.servers.len();
        match self.copies {
            None => Ok(servers),
            Some(copies) if copies == 0 || copies > servers.max(1) => {
                Err(ConfigError::Copies { copies, servers })
            }
            Some(copies) => Ok(copies),
        }
    }

    /// Finds a server by its name or its address.
    pub fn find(&self, name_or_address: &str) -> Option<&ServerSpec> {
        self.servers
            .iter()
            .find(|s| s.name() == name_or_address)
            .or_else(|| self.servers.iter().find(|s| s.address() == name_or_address))
    }

    /// The slow-server allowance (`lag`; default 10 s).
    pub fn lag(&self) -> Result<Duration, ConfigError> {
        match &self.lag {
            Some(t) => eventi_shared::time::parse_duration(t).map_err(ConfigError::Lag),
            None => Ok(crate::store::circle::DEFAULT_LAG),
        }
    }

    /// The embedded store's prune grace period (24 h by default).
    pub fn prune_grace(&self) -> Result<Duration, ConfigError> {
        match &self.prune_grace {
            // No grace at all is allowed (tests; a store no backup runs beside).
            Some(t) if t.trim_end_matches(['s', 'm', 'h']).trim() == "0" => Ok(Duration::ZERO),
            Some(t) => eventi_shared::time::parse_duration(t).map_err(ConfigError::PruneGrace),
            None => Ok(Duration::from_secs(24 * 3600)),
        }
    }

    /// The browsing cache's size in bytes (32 MiB by default).
    pub fn mount_cache(&self) -> Result<u64, ConfigError> {
        match &self.mount_cache {
            Some(t) => eventi_shared::size::parse_size(t).map_err(ConfigError::MountCache),
            None => Ok(32 << 20),
        }
    }

    /// The head name on the servers.
    pub fn head_name(&self) -> &str {
        self.head
            .as_deref()
            .unwrap_or(crate::store::heads::DEFAULT_NAME)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if let Some(p) = self.paths.iter().find(|p| !p.is_absolute()) {
            return Err(ConfigError::Edit(format!(
                "config paths: {} is not an absolute path",
                p.display()
            )));
        }
        if !eventi_shared::head::valid_name(self.head_name()) {
            return Err(ConfigError::Edit(format!(
                "config head = {:?}: 1 to 64 of A-Z a-z 0-9 . _ -",
                self.head_name()
            )));
        }
        for (i, a) in self.servers.iter().enumerate() {
            a.session_key()?;
            for b in &self.servers[..i] {
                if a.name() == b.name() || a.address() == b.address() {
                    return Err(ConfigError::Duplicate(a.name().to_string()));
                }
            }
        }
        self.copies().map(|_| ())
    }

    /// Reads the config file; a missing one is the default config.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = || path.display().to_string();
        let config: Config = match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|cause| ConfigError::Parse {
                path: name(),
                cause,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(cause) => {
                return Err(ConfigError::Read {
                    path: name(),
                    cause,
                })
            }
        };
        config.check()?;
        Ok(config)
    }
}

/// Adds a server to the config file (creating it), keeping everything
/// else in it as it was. Refuses a name or address already there.
pub fn add_server(path: &Path, spec: &ServerSpec) -> Result<(), ConfigError> {
    let config = Config::load(path)?;
    for word in [spec.name(), spec.address()] {
        if config.find(word).is_some() {
            return Err(ConfigError::Edit(format!(
                "the circle already has a server called or at {word:?}"
            )));
        }
    }
    let mut entry = toml_edit::InlineTable::new();
    entry.insert("name", spec.name().into());
    entry.insert("address", spec.address().into());
    if let Some(key) = spec.key() {
        entry.insert("key", key.into());
    }
    if let ServerSpec::Named { plain: true, .. } = spec {
        entry.insert("plain", true.into());
    }
    edit(path, |doc| push_entry(doc, "servers", entry))
}

/// Appends `entry` to the array `key` (made if missing), one entry per
/// line so that the list stays readable as it grows.
fn push_entry(
    doc: &mut toml_edit::DocumentMut,
    key: &str,
    entry: toml_edit::InlineTable,
) -> Result<(), ConfigError> {
    let array = doc
        .entry(key)
        .or_insert(toml_edit::value(toml_edit::Array::new()))
        .as_array_mut()
        .ok_or_else(|| ConfigError::Edit(format!("`{key}` is not an array")))?;
    array.push(entry);
    for item in array.iter_mut() {
        item.decor_mut().set_prefix("\n    ");
    }
    array.set_trailing("\n");
    array.set_trailing_comma(true);
    Ok(())
}

/// Adds a write-only machine to the config file (creating it), keeping
/// everything else as it was. Refuses a name already there.
pub fn add_machine(path: &Path, machine: &Machine) -> Result<(), ConfigError> {
    let config = Config::load(path)?;
    if config.machines.iter().any(|m| m.name == machine.name) {
        return Err(ConfigError::Edit(format!(
            "a machine is called {:?} already",
            machine.name
        )));
    }
    let mut entry = toml_edit::InlineTable::new();
    entry.insert("name", machine.name.as_str().into());
    entry.insert("key", machine.key.as_str().into());
    edit(path, |doc| push_entry(doc, "machines", entry))
}

/// Removes the server called (or at) `name_or_address` from the config
/// file; returns it. Refuses to leave fewer servers than `copies`.
pub fn remove_server(path: &Path, name_or_address: &str) -> Result<ServerSpec, ConfigError> {
    let config = Config::load(path)?;
    let spec = config
        .find(name_or_address)
        .cloned()
        .ok_or_else(|| ConfigError::Edit(format!("no server called or at {name_or_address:?}")))?;
    if let Some(copies) = config.copies {
        if copies >= config.servers.len() && config.servers.len() > 1 {
            return Err(ConfigError::Edit(format!(
                "the config asks for copies = {copies}: lower it before removing a server"
            )));
        }
    }
    edit(path, |doc| {
        let array = doc
            .get_mut("servers")
            .and_then(|s| s.as_array_mut())
            .ok_or_else(|| ConfigError::Edit("`servers` is not an array".into()))?;
        array.retain(|v| {
            let address = v
                .as_str()
                .or_else(|| v.as_inline_table()?.get("address")?.as_str());
            address != Some(spec.address())
        });
        Ok(())
    })?;
    Ok(spec)
}

/// Pins `line` (an identity line) for the server at `address`, which has
/// none pinned: an old bare-address entry becomes a named one. Refuses to
/// replace a pinned key (that is `server remove` and `add`, on purpose).
pub fn pin_server(path: &Path, address: &str, line: &str) -> Result<(), ConfigError> {
    edit(path, |doc| {
        let array = doc
            .get_mut("servers")
            .and_then(|s| s.as_array_mut())
            .ok_or_else(|| ConfigError::Edit("`servers` is not an array".into()))?;
        for item in array.iter_mut() {
            if item.as_str() == Some(address) {
                let mut entry = toml_edit::InlineTable::new();
                entry.insert("name", address.into());
                entry.insert("address", address.into());
                entry.insert("key", line.into());
                let decor = item.decor().clone();
                *item = toml_edit::Value::InlineTable(entry);
                *item.decor_mut() = decor;
                return Ok(());
            }
            if let Some(table) = item.as_inline_table_mut() {
                if table.get("address").and_then(|a| a.as_str()) != Some(address) {
                    continue;
                }
                if table.contains_key("key") {
                    return Err(ConfigError::Edit(format!(
                        "{address} already has a pinned identity"
                    )));
                }
                table.insert("key", line.into());
                return Ok(());
            }
        }
        Err(ConfigError::Edit(format!("no server at {address:?}")))
    })
}

/// Rewrites the config file through `change`, atomically.
fn edit(
    path: &Path,
    change: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    let name = || path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(cause) => {
            return Err(ConfigError::Read {
                path: name(),
                cause,
            })
        }
    };
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| ConfigError::Edit(format!("in {}: {e}", name())))?;
    change(&mut doc)?;
    let out = doc.to_string();
    // What we write must load: never leave a config the next command refuses.
    toml::from_str::<Config>(&out)
        .map_err(|cause| ConfigError::Parse {
            path: name(),
            cause,
        })?
        .check()?;
    crate::home::write_atomic(path, out.as_bytes()).map_err(|cause| ConfigError::Write {
        path: name(),
        cause,
    })
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
        assert_eq!(
            config.servers,
            [ServerSpec::Address("127.0.0.1:17034".into())]
        );
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

    #[test]
    fn servers_are_added_and_removed_keeping_comments_and_copies_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "# mine\nservers = [\"127.0.0.1:1\"] # old form\ncopies = 1\n",
        )
        .unwrap();
        let named = |n: &str, a: &str| ServerSpec::Named {
            name: n.into(),
            address: a.into(),
            key: None,
            plain: a.ends_with(":3"),
        };
        add_server(&path, &named("bo", "127.0.0.1:2")).unwrap();
        add_server(&path, &named("cy", "127.0.0.1:3")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# mine\n"), "{text}");
        let config = Config::load(&path).unwrap();
        assert_eq!(config.servers.len(), 3);
        assert_eq!(config.servers[0].name(), "127.0.0.1:1");
        // An unpinned server is learned (encrypted to an eventi-server);
        // one added --plain stays plain.
        assert_eq!(config.servers[1].session_key().unwrap(), ServerKey::Learn);
        assert_eq!(config.servers[2].session_key().unwrap(), ServerKey::Plain);
        // Pinning on first use: the bare address becomes a named entry
        // with the key; a pinned key is not replaced.
        let line = eventi_shared::identity::format(&[4; 32], "");
        pin_server(&path, "127.0.0.1:1", &line).unwrap();
        pin_server(&path, "127.0.0.1:2", &line).unwrap();
        assert!(pin_server(&path, "127.0.0.1:2", &line).is_err());
        assert!(pin_server(&path, "127.0.0.1:9", &line).is_err());
        let config = Config::load(&path).unwrap();
        for spec in &config.servers[..2] {
            assert_eq!(spec.session_key().unwrap(), ServerKey::Pinned([4; 32]));
        }
        assert_eq!(config.servers[0].name(), "127.0.0.1:1");
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("# mine\n"));
        assert_eq!(config.find("cy").unwrap().address(), "127.0.0.1:3");
        assert_eq!(config.find("127.0.0.1:2").unwrap().name(), "bo");
        assert_eq!(config.copies().unwrap(), 1);
        let again = add_server(&path, &named("dee", "127.0.0.1:2")).unwrap_err();
        assert!(again.to_string().contains("127.0.0.1:2"), "{again}");
        assert_eq!(remove_server(&path, "bo").unwrap().address(), "127.0.0.1:2");
        assert_eq!(
            remove_server(&path, "127.0.0.1:1").unwrap().name(),
            "127.0.0.1:1"
        );
        let left = Config::load(&path).unwrap();
        assert_eq!(left.servers, [named("cy", "127.0.0.1:3")]);
        assert!(remove_server(&path, "nobody").is_err());

        // Asking for more copies than servers is refused at load.
        std::fs::write(&path, "servers = [\"127.0.0.1:1\"]\ncopies = 2\n").unwrap();
        let err = Config::load(&path).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Copies {
                    copies: 2,
                    servers: 1
                }
            ),
            "{err}"
        );
        std::fs::write(
            &path,
            "servers = [\"127.0.0.1:1\", { name = \"x\", address = \"127.0.0.1:1\" }]\n",
        )
        .unwrap();
        assert!(matches!(
            Config::load(&path),
            Err(ConfigError::Duplicate(_))
        ));
    }
}
