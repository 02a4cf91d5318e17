//! `eventi cat SNAP:PATH`: a file's content on stdout, or a range of it
//! (`--offset`, `--length`), reached in one fetch per tree level.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use eventi::format::dirent::{Entry, Kind};
use eventi::walk;

/// Options of `eventi cat`.
#[derive(clap::Args)]
pub struct Args {
    /// SNAP:PATH, or CAPABILITY[:PATH] (a line, `-` for stdin, or @FILE).
    spec: String,
    /// With a capability: a server to read from, before those the line
    /// names (repeatable).
    #[arg(long = "server", value_name = "HOST:PORT")]
    servers: Vec<String>,
    /// Start at this byte of the file (`1GiB` and the like work too).
    #[arg(long, value_name = "BYTES", default_value = "0", value_parser = eventi_shared::size::parse_size)]
    offset: u64,
    /// Write at most this many bytes (default: to the end).
    #[arg(long, value_name = "BYTES", value_parser = eventi_shared::size::parse_size)]
    length: Option<u64>,
    /// Read the passphrase from this file.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if super::reading::is_capability(&args.spec) {
        let (cap_arg, path) = super::reading::split_path(&args.spec);
        let cap = super::reading::read(cap_arg)?;
        let reader = super::reading::reader(&cap, &args.servers)?;
        let envelope = reader.envelope(&cap)?;
        let mut entry = eventi::share::lookup(&reader, &envelope.entry, Path::new(path))?;
        if entry.kind == Kind::Hardlink {
            entry = eventi::share::resolve_hardlink(&reader, &envelope, &entry)?;
        }
        return write_out(&reader, &entry, path, &args);
    }
    let (repo, snapshot, path, mut entry) =
        super::open_spec(&args.spec, args.passphrase_file.as_deref())?;
    let store = repo.store().as_ref();
    if entry.kind == Kind::Hardlink {
        let first = Path::new(std::ffi::OsStr::from_bytes(&entry.target)).to_path_buf();
        entry = walk::lookup(store, snapshot.tree, &first)?;
    }
    let code = write_out(store, &entry, &path.display().to_string(), &args)?;
    repo.close()?;
    Ok(code)
}

/// Writes the file `entry` (at `path`), or the range asked for, to stdout.
fn write_out(
    store: &dyn eventi::store::BlockStore,
    entry: &Entry,
    path: &str,
    args: &Args,
) -> anyhow::Result<ExitCode> {
    if entry.kind != Kind::File {
        bail!("{path} is not a file");
    }
    let content = entry.content.context("file entry without content")?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    if args.offset == 0 && args.length.is_none() {
        eventi::stream::read(store, &content, &mut out)
    } else {
        let length = args.length.unwrap_or(u64::MAX);
        eventi::stream::read_range(store, &content, args.offset, length, &mut out)
    }
    .with_context(|| format!("reading {path}"))?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
