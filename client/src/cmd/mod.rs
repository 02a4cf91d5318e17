//! One module per command, and the formatting they share.

pub mod backup;
pub mod browsing;
pub mod cat;
pub mod check;
pub mod diff;
pub mod forget;
pub mod get;
pub mod init;
pub mod key;
pub mod log;
pub mod ls;
pub mod mount;
pub mod pinning;
pub mod prune;
pub mod put;
pub mod reading;
pub mod repair;
pub mod restore;
pub mod serve_9p;
pub mod server;
pub mod share;
pub mod snapshots;

/// Opens the home for reading and finds `SNAP[:PATH]`: the repo, the
/// snapshot, the path within it, and the entry there.
pub fn open_spec(
    spec: &str,
    passphrase_file: Option<&std::path::Path>,
) -> anyhow::Result<(
    eventi::repo::Repo,
    eventi::format::snapshot::Snapshot,
    std::path::PathBuf,
    eventi::format::dirent::Entry,
)> {
    let (snap, path) = eventi::walk::split_spec(spec);
    let repo = eventi::repo::Repo::open(passphrase_file, eventi::repo::Access::Read)?;
    let (_, snapshot) = repo.resolve(snap)?;
    let path = std::path::PathBuf::from(path);
    let entry = eventi::walk::lookup(repo.store().as_ref(), snapshot.tree, &path)?;
    Ok((repo, snapshot, path, entry))
}

/// Refuses at once, before any passphrase, a command that must `doing`
/// on a home whose key is write-only.
pub fn require_full_key(doing: &str) -> anyhow::Result<()> {
    let key_path = eventi::home::Home::locate()?.key_file();
    if key_path.exists() {
        eventi::repo::refuse_write_only(&key_path, doing)?;
    }
    Ok(())
}

/// The servers a new capability's line names: `--server`s, else the
/// home's circle; none with `--no-hints`.
pub fn hints(repo: &eventi::repo::Repo, servers: &[String], no_hints: bool) -> Vec<String> {
    if no_hints {
        return Vec::new();
    }
    if !servers.is_empty() {
        return servers.to_vec();
    }
    repo.config
        .servers
        .iter()
        .map(|s| s.address().to_string())
        .collect()
}

/// Prints a new capability's line on stdout, and on stderr what its
/// holder will need if it names no server.
pub fn print_capability(cap: &eventi::format::capability::Capability) {
    if cap.hints.is_empty() {
        eprintln!(
            "eventi: the line names no server: whoever gets it needs `--server HOST:PORT` (or this machine's home)"
        );
    }
    println!("{}", cap.to_line());
}

/// The home's key file opened with the passphrase (`--passphrase-file`,
/// `$EVENTI_PASSPHRASE` or a prompt), for commands that need the write
/// key but not the destination.
pub fn open_secrets(
    passphrase_file: Option<&std::path::Path>,
) -> anyhow::Result<eventi::keys::keyfile::Secrets> {
    use eventi::keys::{keyfile, passphrase};
    let key_path = eventi::home::Home::locate()?.key_file();
    if !key_path.exists() {
        anyhow::bail!(
            "no key file at {}: run `eventi init` (or set EVENTI_HOME)",
            key_path.display()
        );
    }
    let name = key_path.display().to_string();
    let text = keyfile::read(&key_path)?;
    let pass = passphrase::get(passphrase_file, "EVENTI_PASSPHRASE", "Passphrase", false)?;
    Ok(keyfile::open(&text, pass.as_bytes(), &name)?)
}

/// Which snapshots `check` and `repair` cover, and how they report.
#[derive(clap::Args)]
pub struct Selection {
    /// The snapshot (default: latest).
    #[arg(conflicts_with = "all")]
    pub snapshot: Option<String>,
    /// Every snapshot of the chain (repair: and clear every shortfall).
    #[arg(long)]
    pub all: bool,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
    /// The passphrase, from a file.
    #[arg(long)]
    pub passphrase_file: Option<std::path::PathBuf>,
}

/// Opens the home for a check or repair and resolves the snapshot roots
/// it covers: `snapshot` (default `latest`), or with `all` the whole chain.
pub fn chosen_roots(
    selection: &Selection,
) -> anyhow::Result<(eventi::repo::Repo, Vec<eventi_shared::Score>)> {
    let repo = eventi::repo::Repo::open(
        selection.passphrase_file.as_deref(),
        eventi::repo::Access::Repair,
    )?;
    let roots = roots_of(&repo, selection.snapshot.as_deref(), selection.all)?;
    Ok((repo, roots))
}

fn roots_of(
    repo: &eventi::repo::Repo,
    snapshot: Option<&str>,
    all: bool,
) -> anyhow::Result<Vec<eventi_shared::Score>> {
    if all {
        let chain = repo.walk_chain(repo.head()?)?;
        if chain.snapshots.is_empty() {
            anyhow::bail!("no snapshots yet (run `eventi backup`)");
        }
        // The history record at the end of the walk is part of the chain
        // too: without it a server's head leads nowhere.
        return Ok(chain
            .snapshots
            .into_iter()
            .map(|(s, ..)| s)
            .chain(chain.records.into_iter().map(|(s, _)| s))
            .collect());
    }
    Ok(vec![repo.resolve(snapshot.unwrap_or("latest"))?.0])
}

/// A progress bar over `total` on a terminal (none with `--json` or when
/// stderr is not a terminal).
pub fn bar(total: u64, json: bool, verb: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{verb} {{bar:40}} {{pos}}/{{len}} blocks {{elapsed}}"
    ))
    .expect("a valid template");
    bar.set_style(style);
    Some(bar)
}

/// `value` as a JSON object with `"event": kind` added (`--json` output).
pub fn json_event(kind: &str, value: &impl serde::Serialize) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(value)?;
    v["event"] = kind.into();
    Ok(v)
}

/// `1.2 GiB`-style sizes.
pub fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// A snapshot's paths as people read them, space-separated.
pub fn display_paths(paths: &[Vec<u8>]) -> String {
    use std::os::unix::ffi::OsStrExt;
    paths
        .iter()
        .map(|p| {
            std::path::Path::new(std::ffi::OsStr::from_bytes(p))
                .display()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A time in ns since the epoch as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn format_time(ns: i64) -> String {
    eventi_shared::time::format_utc(ns.div_euclid(1_000_000_000))
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_and_sizes() {
        assert_eq!(super::format_time(0), "1970-01-01 00:00:00");
        assert_eq!(
            super::format_time(1_764_064_800_000_000_000),
            "2025-11-25 10:00:00"
        );
        assert_eq!(
            super::format_time(951_782_400 * 1_000_000_000),
            "2000-02-29 00:00:00"
        );
        assert_eq!(super::human_bytes(1023), "1023 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
    }
}
