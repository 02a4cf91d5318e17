//! `eventi cat SNAP:PATH`: a file's content on stdout, or a range of it
//! (`--offset`, `--length`), reached in one fetch per tree level.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use eventi::format::dirent::Kind;
use eventi::walk;

/// Options of `eventi cat`.
#[derive(clap::Args)]
pub struct Args {
    /// SNAP:PATH.
    spec: String,
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
    let (repo, snapshot, path, mut entry) =
        super::open_spec(&args.spec, args.passphrase_file.as_deref())?;
    let path = path.display();
    let store = repo.store().as_ref();
    if entry.kind == Kind::Hardlink {
        let first = std::path::Path::new(std::ffi::OsStr::from_bytes(&entry.target)).to_path_buf();
        entry = walk::lookup(store, snapshot.tree, &first)?;
    }
    if entry.kind != Kind::File {
        bail!("{path} is not a file in the snapshot");
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
    drop(out);
    repo.close()?;
    Ok(ExitCode::SUCCESS)
}

use std::os::unix::ffi::OsStrExt;
