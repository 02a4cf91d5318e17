//! `eventi ls SNAP[:PATH]`: what a snapshot holds.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use eventi::format::dirent::{Entry, Kind};
use eventi::walk::{self, Blocks, Flow, Visit};

/// Options of `eventi ls`.
#[derive(clap::Args)]
pub struct Args {
    /// SNAP or SNAP:PATH (a root score, a unique prefix, or `latest`).
    spec: String,
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
    let (repo, _, path, entry) = super::open_spec(&args.spec, args.passphrase_file.as_deref())?;
    let path = path.as_path();
    if entry.kind == Kind::Dir {
        let store = repo.store().as_ref();
        walk::walk::<anyhow::Error>(store, &entry, path, Blocks::None, &mut |visit| {
            if let Visit::Entry(p, e) = visit {
                print(e, p, args.json);
            }
            Ok(if args.recursive {
                Flow::Continue
            } else {
                Flow::Skip
            })
        })?;
    } else {
        print(&entry, path, args.json);
    }
    repo.close()?;
    Ok(ExitCode::SUCCESS)
}
