//! `eventi get CAPABILITY [TARGET]`: what a capability reads, with no key,
//! config or home: a file to TARGET or stdout, a tree restored under
//! TARGET like `restore` does (temporary names, nothing partial,
//! metadata); a chain's newest drop, or with `--all` every drop.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use eventi::format::dirent::{Entry, Kind};
use eventi::progress::Counters;
use eventi::restore;
use eventi::share::Reader;
use eventi::store::BlockStore;

/// Options of `eventi get`.
#[derive(clap::Args)]
pub struct Args {
    /// CAPABILITY[:PATH]: a capability line, `-` to read it from stdin, or
    /// @FILE to read it from a file; PATH (absolute) picks a part of a tree.
    capability: String,
    /// Where to put it: a file's path, or a directory to put it in (a
    /// tree goes under its own name into an existing directory, else
    /// becomes TARGET). Default for a file: stdout.
    target: Option<PathBuf>,
    /// A server to read from, before those the line names (repeatable).
    #[arg(long = "server", value_name = "HOST:PORT")]
    servers: Vec<String>,
    /// Every drop of the chain, oldest first (into TARGET as 0001-NAME,
    /// 0002-NAME, ...; files only, one after another, on stdout).
    #[arg(long)]
    all: bool,
    /// Replace files that exist and differ.
    #[arg(long)]
    overwrite: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (cap_arg, path) = super::reading::split_path(&args.capability);
    let cap = super::reading::read(cap_arg)?;
    let reader = super::reading::reader(&cap, &args.servers)?;
    if args.all {
        if path != "/" {
            bail!("--all fetches whole drops: give no PATH");
        }
        let mut chain = reader.chain(&cap)?;
        chain.reverse();
        let mut failed = false;
        for (i, (_, envelope)) in chain.into_iter().enumerate() {
            let mut entry = envelope.entry.clone();
            if let Some(dir) = &args.target {
                let mut name = format!("{:04}-", i + 1).into_bytes();
                name.extend_from_slice(&entry.name);
                entry.name = name;
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            failed |= !deliver(
                &reader,
                &envelope.base,
                entry,
                args.target.as_deref(),
                &args,
            )?;
        }
        return Ok(exit(failed));
    }
    let envelope = reader.envelope(&cap)?;
    let mut entry = eventi::share::lookup(&reader, &envelope.entry, Path::new(path))?;
    let mut base = envelope.base.clone();
    if path != "/" {
        base.extend_from_slice(path.trim_end_matches('/').as_bytes());
    }
    if entry.kind == Kind::Hardlink {
        entry = eventi::share::resolve_hardlink(&reader, &envelope, &entry)?;
    }
    let ok = deliver(&reader, &base, entry, args.target.as_deref(), &args)?;
    Ok(exit(!ok))
}

fn exit(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Puts `entry` (whose path in its snapshot is `base`) at `target`, or a
/// file on stdout. Whether everything was delivered.
fn deliver(
    reader: &Reader,
    base: &[u8],
    entry: Entry,
    target: Option<&Path>,
    args: &Args,
) -> anyhow::Result<bool> {
    let Some(target) = target else {
        if entry.kind != Kind::File {
            bail!(
                "{} is a directory tree: give a TARGET directory to put it in",
                String::from_utf8_lossy(&entry.name)
            );
        }
        let content = entry.content.context("file entry without content")?;
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        eventi::stream::read(reader as &dyn BlockStore, &content, &mut out)
            .with_context(|| format!("reading {}", String::from_utf8_lossy(&entry.name)))?;
        out.flush()?;
        return Ok(true);
    };
    let mut entry = entry;
    // Into an existing directory under its own name, else as TARGET.
    let dir = if target.is_dir() {
        target.to_path_buf()
    } else {
        let name = target
            .file_name()
            .with_context(|| format!("{} names no file", target.display()))?;
        entry.name = name.as_bytes().to_vec();
        match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    };
    let from = PathBuf::from(std::ffi::OsStr::from_bytes(base));
    let options = restore::Options {
        overwrite: args.overwrite,
        verify: false,
        threads: restore::default_threads(),
    };
    let warn = |p: &Path, what: &str| eprintln!("eventi: {}: {what}", p.display());
    let summary = restore::run(
        reader,
        None,
        entry,
        &from,
        &dir,
        &options,
        &Counters::default(),
        &warn,
    )?;
    if summary.errors > 0 {
        eprintln!(
            "eventi: {} entries were not restored (see above)",
            summary.errors
        );
    }
    Ok(summary.errors == 0)
}
