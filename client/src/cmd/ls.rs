//! `eventi ls SNAP[:PATH]`: what a snapshot holds.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use eventi::format::dirent::{Entry, Kind};
use eventi::walk::{self, Blocks, Flow, Visit};

/// Options of `eventi ls`.
#[derive(clap::Args)]
pub struct Args {
    /// SNAP[:PATH] (a root score, a unique prefix, or `latest`), or
    /// CAPABILITY[:PATH] (a line, `-` for stdin, or @FILE).
    spec: String,
    /// With a capability: a server to read from, before those the line
    /// names (repeatable).
    #[arg(long = "server", value_name = "HOST:PORT")]
    servers: Vec<String>,
    /// List everything below, not just one level.
    #[arg(short, long)]
    recursive: bool,
    /// One JSON object per entry.
    #[arg(long)]
    json: bool,
    /// Read the passphrase from this file.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

/// `ls -l`'s mode string.
pub fn mode_string(e: &Entry) -> String {
    let t = match e.kind {
        Kind::Dir => 'd',
        Kind::Symlink => 'l',
        Kind::Fifo => 'p',
        Kind::CharDevice => 'c',
        Kind::BlockDevice => 'b',
        Kind::File | Kind::Hardlink => '-',
    };
    let mut s = String::from(t);
    for shift in [6, 3, 0] {
        let bits = (e.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn print(e: &Entry, path: &Path, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({
                "path": path.to_string_lossy(),
                "kind": format!("{:?}", e.kind).to_lowercase(),
                "mode": e.mode,
                "uid": e.uid, "gid": e.gid, "user": e.user, "group": e.group,
                "size": e.size,
                "mtime_ns": e.mtime_ns,
                "target": (!e.target.is_empty()).then(|| String::from_utf8_lossy(&e.target)),
            })
        );
        return;
    }
    let owner = if e.user.is_empty() {
        e.uid.to_string()
    } else {
        e.user.clone()
    };
    let group = if e.group.is_empty() {
        e.gid.to_string()
    } else {
        e.group.clone()
    };
    let mut line = format!(
        "{} {owner:>8} {group:>8} {:>12} {} {}",
        mode_string(e),
        e.size,
        super::format_time(e.mtime_ns),
        path.display()
    );
    match e.kind {
        Kind::Symlink => {
            line += &format!(
                " -> {}",
                Path::new(std::ffi::OsStr::from_bytes(&e.target)).display()
            )
        }
        Kind::Hardlink => {
            line += &format!(
                " => {}",
                Path::new(std::ffi::OsStr::from_bytes(&e.target)).display()
            )
        }
        _ => {}
    }
    println!("{line}");
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if super::reading::is_capability(&args.spec) {
        let (cap_arg, path) = super::reading::split_path(&args.spec);
        let cap = super::reading::read(cap_arg)?;
        let reader = super::reading::reader(&cap, &args.servers)?;
        let envelope = reader.envelope(&cap)?;
        let path = Path::new(path);
        let entry = eventi::share::lookup(&reader, &envelope.entry, path)?;
        // A file's capability lists as `/NAME`, what it would be in a tree.
        let shown = if entry.kind != Kind::Dir && path == Path::new("/") {
            path.join(std::ffi::OsStr::from_bytes(&entry.name))
        } else {
            path.to_path_buf()
        };
        list(&reader, &entry, &shown, &args)?;
        return Ok(ExitCode::SUCCESS);
    }
    let (repo, _, path, entry) = super::open_spec(&args.spec, args.passphrase_file.as_deref())?;
    list(repo.store().as_ref(), &entry, &path, &args)?;
    repo.close()?;
    Ok(ExitCode::SUCCESS)
}

/// Prints `entry` (at `path`), or what the directory holds.
fn list(
    store: &dyn eventi::store::BlockStore,
    entry: &Entry,
    path: &Path,
    args: &Args,
) -> anyhow::Result<()> {
    if entry.kind != Kind::Dir {
        print(entry, path, args.json);
        return Ok(());
    }
    walk::walk::<anyhow::Error>(store, entry, path, Blocks::None, &mut |visit| {
        if let Visit::Entry(p, e) = visit {
            print(e, p, args.json);
        }
        Ok(if args.recursive {
            Flow::Continue
        } else {
            Flow::Skip
        })
    })?;
    Ok(())
}
