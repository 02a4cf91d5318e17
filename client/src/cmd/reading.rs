//! What the capability commands (`get`, `ls`, `cat`, `log`, `put
//! --follows`) share: a capability from the argument, from stdin (`-`)
//! or from a file (`@FILE`), so that it need not sit in the shell's
//! history or the process list; and the reader of the servers that hold
//! it. None of it needs a key, a config or a home.

use std::path::PathBuf;

use anyhow::{bail, Context};
use eventi::format::capability::Capability;
use eventi::home::config::Config;
use eventi::home::Home;
use eventi::share::Reader;

/// Whether `spec` is a capability (or says where to read one) rather
/// than a snapshot: snapshots are hex or `latest`, capabilities start
/// with `ev`, `-` or `@`.
pub fn is_capability(spec: &str) -> bool {
    let s = spec.trim_start();
    s == "-" || s.starts_with('@') || s.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("ev"))
}

/// Splits `CAPABILITY[:PATH]` (PATH absolute: hints never hold a '/').
pub fn split_path(spec: &str) -> (&str, &str) {
    match spec.find(":/") {
        Some(i) => (&spec[..i], &spec[i + 1..]),
        None => (spec, "/"),
    }
}

/// The capability `arg` gives: the line itself, the first line of stdin
/// (`-`), or the first line of a file (`@FILE`).
pub fn read(arg: &str) -> anyhow::Result<Capability> {
    let text = if arg == "-" {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the capability from stdin")?;
        line
    } else if let Some(file) = arg.strip_prefix('@') {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the capability from {file}"))?;
        text.lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string()
    } else {
        arg.to_string()
    };
    Capability::parse(&text).context("reading the capability")
}

/// The reader for `cap`: the `--server`s first, then the servers the
/// line hints. With neither, this machine's home, if it has one (its
/// servers, or its embedded store).
pub fn reader(cap: &Capability, servers: &[String]) -> anyhow::Result<Reader> {
    reader_for(cap, servers, false)
}

/// [`reader`]; with `shared`, an embedded store is opened read-only and
/// without its lock, for a mount that stays up beside backups.
pub fn reader_for(cap: &Capability, servers: &[String], shared: bool) -> anyhow::Result<Reader> {
    let timeout = Config::default().timeout()?;
    let mut addresses: Vec<String> = servers.to_vec();
    addresses.extend(cap.hints.iter().cloned());
    if addresses.is_empty() {
        return home_reader(timeout, shared);
    }
    // A server this machine's home pins is held to its identity; reading
    // the config writes nothing, and with no home there is none.
    let pins = Home::locate()
        .ok()
        .and_then(|h| Config::load(&h.config_file()).ok())
        .map(|c| eventi::share::pins_of(&c))
        .unwrap_or_default();
    let reader = Reader::new(timeout, pins);
    reader.add(&addresses);
    if reader.is_empty() {
        bail!(
            "no server of the capability answers: {}",
            reader.failures().join("; ")
        );
    }
    for f in reader.failures() {
        eprintln!("eventi: skipping {f}");
    }
    Ok(reader)
}

/// This machine's home as the reader (no key needed: its servers are
/// read anonymously, its embedded store directly).
fn home_reader(timeout: std::time::Duration, shared: bool) -> anyhow::Result<Reader> {
    let no_server = "the capability names no server: give --server HOST:PORT";
    let home = Home::locate().context(no_server)?;
    let config = Config::load(&home.config_file())?;
    if !config.servers.is_empty() {
        let addresses: Vec<String> = config
            .servers
            .iter()
            .map(|s| s.address().to_string())
            .collect();
        let reader = Reader::new(timeout, eventi::share::pins_of(&config));
        reader.add(&addresses);
        if reader.is_empty() {
            bail!(
                "the capability names no server, and none of this home's answers: {}",
                reader.failures().join("; ")
            );
        }
        return Ok(reader);
    }
    let dir: PathBuf = home.store_dir();
    if !dir.exists() {
        bail!("{no_server}");
    }
    let store = if shared {
        eventi::store::local::LocalStore::open_shared(&dir)?
    } else {
        eventi::store::local::LocalStore::open(&dir)?
    };
    Ok(Reader::of_store(
        std::sync::Arc::new(store),
        timeout,
        Default::default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_told_from_snapshots_and_split_from_their_path() {
        for spec in ["ev1dabc", "EV1F", "-", "@caps.txt", "@caps.txt:/a"] {
            assert!(is_capability(spec), "{spec}");
        }
        for spec in ["latest", "a9993e36", "latest:/home", "0ev1"] {
            assert!(!is_capability(spec), "{spec}");
        }
        assert_eq!(split_path("ev1dxyz"), ("ev1dxyz", "/"));
        assert_eq!(split_path("ev1dxyz:/a/b"), ("ev1dxyz", "/a/b"));
        // Hints hold colons, never a slash.
        assert_eq!(
            split_path("ev1dxyz@h.example:17034,10.0.0.1:1:/a"),
            ("ev1dxyz@h.example:17034,10.0.0.1:1", "/a")
        );
        assert_eq!(split_path("@f:/x"), ("@f", "/x"));
    }
}
