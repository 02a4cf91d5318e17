//! What `eventi mount` and `eventi serve-9p` share: the tree they show
//! (the whole chain, `SNAP[:PATH]`, or `CAPABILITY[:PATH]`, which needs
//! no key), opened so that backups go on beside them, and the figures
//! they print when they end.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use anyhow::Context;
use eventi::browse::{Browser, ChainSnapshot, Top};
use eventi::home::config::Config;
use eventi::home::Home;
use eventi::repo::{Access, Repo};

/// The options both commands take.
#[derive(clap::Args)]
pub struct Source {
    /// What to show: a snapshot (`SNAP[:PATH]`: a root score, a unique
    /// prefix, or `latest`), or a capability (`CAPABILITY[:PATH]`, a line,
    /// `-` for stdin, or @FILE). Default: every snapshot of the chain,
    /// one directory each, and `latest`.
    pub spec: Option<String>,
    /// With a capability: a server to read from, before those the line
    /// names (repeatable).
    #[arg(long = "server", value_name = "HOST:PORT")]
    pub servers: Vec<String>,
    /// Decrypted blocks and directories kept in memory (default: the
    /// config's `mount_cache`, else 32MiB).
    #[arg(long, value_name = "BYTES", value_parser = eventi_shared::size::parse_size)]
    pub cache: Option<u64>,
    /// Read the passphrase from this file.
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
}

/// An opened tree, with what it reads through kept open.
pub struct Opened {
    /// The tree.
    pub browser: Arc<Browser>,
    /// What is shown, for messages.
    pub what: String,
    /// The home's repo, when the tree came from it (closed at the end).
    repo: Option<Repo>,
}

impl Opened {
    /// Prints what was fetched and closes the store.
    pub fn finish(self, verb: &str) -> anyhow::Result<()> {
        let c = self.browser.blocks().counters();
        eprintln!(
            "eventi: {verb} {}: fetched {} blocks ({} bytes) from {}",
            self.what,
            c.blocks.load(Relaxed),
            c.bytes.load(Relaxed),
            self.browser.blocks().store_name()
        );
        if let Some(repo) = self.repo {
            repo.destination.close()?;
        }
        Ok(())
    }
}

/// The cache size: `--cache`, the config's, or the default.
fn cache_bytes(source: &Source) -> anyhow::Result<usize> {
    if let Some(c) = source.cache {
        return Ok(c as usize);
    }
    let config = Home::locate()
        .ok()
        .and_then(|h| Config::load(&h.config_file()).ok())
        .unwrap_or_default();
    Ok(config.mount_cache()? as usize)
}

/// Keeps a process that stays up for hours, with many threads handing
/// buffers to each other, from holding on to what it freed: glibc's
/// default raises its mmap threshold after the first large free (so
/// every later 1 MiB read reply stays in some thread's arena) and gives
/// each thread an arena. Measured on the bench data: 104 MB resident
/// after `ls -lR` and a 100 MB `cat`, 71 MB with this, at the same speed.
fn keep_memory_small() {
    // SAFETY: mallopt only sets allocator parameters; both are valid.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Opens what `source` names.
pub fn open(source: &Source) -> anyhow::Result<Opened> {
    keep_memory_small();
    let cache = cache_bytes(source)?;
    let spec = source.spec.as_deref();
    if let Some(spec) = spec.filter(|s| super::reading::is_capability(s)) {
        let (cap_arg, path) = super::reading::split_path(spec);
        let cap = super::reading::read(cap_arg)?;
        let reader = super::reading::reader_for(&cap, &source.servers, true)?;
        let envelope = reader.envelope(&cap)?;
        let entry = eventi::share::lookup(&reader, &envelope.entry, Path::new(path))?;
        let base = Path::new(std::ffi::OsStr::from_bytes(&envelope.base));
        let rel = Path::new(path).strip_prefix("/").unwrap_or(Path::new(path));
        let top = Top::Tree {
            entry: Box::new(entry),
            path: Path::new("/").join(base).join(rel),
            snapshot_tree: None,
        };
        let store: Arc<dyn eventi::store::BlockStore> = Arc::new(reader);
        return Ok(Opened {
            browser: Arc::new(Browser::new(store, top, cache)),
            what: "the capability".into(),
            repo: None,
        });
    }
    let repo = Repo::open(source.passphrase_file.as_deref(), Access::Browse)?;
    let (top, what) = match spec {
        None => {
            let chain = repo.walk_chain(repo.head()?)?;
            let snapshots = chain
                .snapshots
                .iter()
                .map(|(root, s, _)| ChainSnapshot {
                    root: *root,
                    time_ns: s.time_ns,
                    tree: s.tree,
                })
                .collect::<Vec<_>>();
            let n = snapshots.len();
            (Top::Chain(snapshots), format!("{n} snapshots"))
        }
        Some(spec) => {
            let (snap, path) = eventi::walk::split_spec(spec);
            let (root, snapshot) = repo.resolve(snap)?;
            let path = PathBuf::from(path);
            let entry = eventi::walk::lookup(repo.store().as_ref(), snapshot.tree, &path)
                .with_context(|| format!("finding {} in snapshot {root}", path.display()))?;
            let what = format!("{root}:{}", path.display());
            let top = Top::Tree {
                entry: Box::new(entry),
                path,
                snapshot_tree: Some(snapshot.tree),
            };
            (top, what)
        }
    };
    let browser = Arc::new(Browser::new(Arc::clone(repo.store()), top, cache));
    Ok(Opened {
        browser,
        what,
        repo: Some(repo),
    })
}
