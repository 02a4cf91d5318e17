//! `eventi put`'s engine: one file, one tree or a stream stored by
//! itself, outside the snapshot chain, with the backup's own pipeline
//! (stat cache, sent-block record, checkpoints); what comes back is the
//! entry a capability's envelope holds.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use anyhow::{bail, Context};

use super::{normalize, open_uploader, store_paths, Options, Stored};
use crate::format::dirent::{Entry, Kind};
use crate::progress::Counters;
use crate::repo::Repo;
use crate::stream;

/// What a put stored.
#[derive(Debug, serde::Serialize)]
pub struct Put {
    /// The entry (name, metadata, content) the capability will open.
    #[serde(skip)]
    pub entry: Entry,
    /// Where it was: its absolute path (empty for a stream), which hard
    /// links inside a tree name their first path from.
    #[serde(skip)]
    pub base: Vec<u8>,
    /// Blocks sent to the store.
    pub sent_blocks: u64,
    /// Their bytes (compressed and encrypted).
    pub sent_bytes: u64,
    /// Blocks the store already had.
    pub known_blocks: u64,
}

/// Stores `options.paths[0]` (a file or a directory tree) by itself.
/// All or nothing: an entry that cannot be read fails the put.
pub fn path(
    repo: &Repo,
    options: &Options,
    counters: Arc<Counters>,
    warn: &(dyn Fn(&Path, &str) + Sync),
) -> anyhow::Result<Put> {
    let paths = normalize(&options.paths)?;
    let [path] = &paths[..] else {
        bail!("put stores one path at a time");
    };
    let Stored {
        tops,
        counts,
        reused,
        uploader,
        cache,
        ..
    } = store_paths(repo, options, &paths, counters, warn, &|_| {})?;
    uploader.flush().context("storing the put's blocks")?;
    cache.sweep(path.as_os_str().as_bytes(), &reused)?;
    if counts.errors > 0 {
        bail!(
            "{} entries under {} could not be read (named above): no capability was made",
            counts.errors,
            path.display()
        );
    }
    let (_, mut entry) = tops
        .into_iter()
        .next()
        .with_context(|| format!("{} could not be read", path.display()))?;
    if entry.kind != Kind::File && entry.kind != Kind::Dir {
        bail!(
            "{} is neither a file nor a directory: only those can be put",
            path.display()
        );
    }
    if entry.name.is_empty() {
        entry.name = b"root".to_vec();
    }
    Ok(Put {
        entry,
        base: path.as_os_str().as_bytes().to_vec(),
        sent_blocks: uploader.sent_blocks.load(Relaxed),
        sent_bytes: uploader.sent_bytes.load(Relaxed),
        known_blocks: uploader.known_blocks.load(Relaxed),
    })
}

/// Stores what `source` yields as a file named `name` (mode 0644, owned
/// by whoever runs this, dated now).
pub fn stream(
    repo: &Repo,
    options: &Options,
    source: impl std::io::Read,
    name: &[u8],
) -> anyhow::Result<Put> {
    let (uploader, _cache) = open_uploader(repo, options)?;
    let convergence = *repo.key.write().convergence();
    let written = stream::write(uploader.as_ref(), &convergence, source);
    if let Some(e) = uploader.error() {
        bail!("put stopped: {e}");
    }
    let (content, size) = written.context("reading the input")?;
    uploader.flush().context("storing the put's blocks")?;
    // SAFETY: getuid and getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let names = crate::fsmeta::Names::default();
    let entry = Entry {
        kind: Kind::File,
        name: name.to_vec(),
        mode: 0o100644,
        uid,
        gid,
        user: names.user(uid),
        group: names.group(gid),
        mtime_ns: crate::fsmeta::now_ns(),
        size,
        rdev: 0,
        target: Vec::new(),
        content: Some(content),
        xattrs: Vec::new(),
        nlink: 0,
    };
    Ok(Put {
        entry,
        base: Vec::new(),
        sent_blocks: uploader.sent_blocks.load(Relaxed),
        sent_bytes: uploader.sent_bytes.load(Relaxed),
        known_blocks: uploader.known_blocks.load(Relaxed),
    })
}
