//! `eventi share SNAP:PATH`: the capability of one file or directory tree
//! of a snapshot, as one line (docs/FORMAT.md, "Capabilities").

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use eventi::format::capability::{self, Envelope};
use eventi::format::dirent::Kind;
use eventi::repo::{Access, Repo};
use eventi::walk;

/// Options of `eventi share`.
#[derive(clap::Args)]
pub struct Args {
    /// SNAP:PATH (a root score, a unique prefix, or `latest`; PATH absolute).
    spec: String,
    /// A server the line names as holding it (repeatable; default: the
    /// home's servers).
    #[arg(long = "server", value_name = "HOST:PORT")]
    servers: Vec<String>,
    /// Name no server in the line (the holder gives `--server`).
    #[arg(long, conflicts_with = "servers")]
    no_hints: bool,
    /// Read the passphrase from this file.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    super::require_full_key("share")?;
    let (snap, path) = walk::split_spec(&args.spec);
    // Writes the envelope: the write access a backup has.
    let repo = Repo::open(args.passphrase_file.as_deref(), Access::Write)?;
    let (root, snapshot) = repo.resolve(snap)?;
    let path = absolute(path);
    let store = repo.store().as_ref();
    let mut entry = walk::lookup(store, snapshot.tree, &path)?;
    if entry.kind == Kind::Hardlink {
        let first = PathBuf::from(std::ffi::OsStr::from_bytes(&entry.target));
        let name = std::mem::take(&mut entry.name);
        entry = walk::lookup(store, snapshot.tree, &first)?;
        entry.name = name;
    }
    if entry.name.is_empty() {
        entry.name = format!("snapshot-{}", &root.to_string()[..12]).into_bytes();
    }
    let kind = capability::kind_of(&entry, false)
        .map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))?;
    let envelope = Envelope {
        kind,
        time_ns: snapshot.time_ns,
        follows: None,
        base: path.as_os_str().as_bytes().to_vec(),
        entry,
    };
    let cap = eventi::share::store_envelope(&repo, &envelope)?;
    let hints = super::hints(&repo, &args.servers, args.no_hints);
    let cap = cap.with_hints(&hints).context("a server hint")?;
    repo.close()?;
    super::print_capability(&cap);
    Ok(ExitCode::SUCCESS)
}

/// `path` as an absolute path without `.` (`..` is refused by the lookup).
fn absolute(path: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in std::path::Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
