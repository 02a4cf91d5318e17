//! `eventi cat SNAP:PATH`: a file's content on stdout.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use eventi::dirent::Kind;
use eventi::walk;

/// Options of `eventi cat`.
#[derive(clap::Args)]
pub struct Args {
    /// SNAP:PATH.
    spec: String,
    /// Read the passphrase from this file.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (repo, snapshot, path, mut entry) =
        super::open_spec(&args.spec, args.passphrase_file.as_deref())?;
    let path = path.display();
    let store = repo.store.as_ref();
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
    eventi::tree::read(store, &content, &mut out).with_context(|| format!("reading {path}"))?;
    out.flush()?;
    drop(out);
    repo.close()?;
    Ok(ExitCode::SUCCESS)
}

use std::os::unix::ffi::OsStrExt;
