//! `eventi diff SNAP SNAP`: what changed between two snapshots. Equal
//! references mean equal subtrees, which are skipped without reading.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use eventi::format::dirent::{Entry, Kind};
use eventi::repo::{Access, Repo};
use eventi::store::BlockStore;
use eventi::walk::{self, Blocks, Flow, Visit};

/// Options of `eventi diff`.
#[derive(clap::Args)]
pub struct Args {
    /// The older snapshot.
    from: String,
    /// The newer snapshot.
    to: String,
    /// Read the passphrase from this file.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

#[derive(Default)]
struct Tally {
    added: u64,
    removed: u64,
    modified: u64,
}

fn same_metadata(a: &Entry, b: &Entry) -> bool {
    a.kind == b.kind
        && a.mode == b.mode
        && a.uid == b.uid
        && a.gid == b.gid
        && a.mtime_ns == b.mtime_ns
        && a.size == b.size
        && a.target == b.target
        && a.rdev == b.rdev
        && a.xattrs == b.xattrs
}

/// Prints every entry below directory `dir` as added (`+`) or removed
/// (`-`), counting them in `count`.
fn list_below(
    store: &dyn BlockStore,
    dir: &Entry,
    path: &Path,
    sign: char,
    count: &mut u64,
) -> anyhow::Result<()> {
    walk::walk::<anyhow::Error>(store, dir, path, Blocks::None, &mut |visit| {
        if let Visit::Entry(p, e) = visit {
            println!("{sign} {}{}", p.display(), slash(e));
            *count += 1;
        }
        Ok(Flow::Continue)
    })?;
    Ok(())
}

fn slash(e: &Entry) -> &'static str {
    if e.kind == Kind::Dir {
        "/"
    } else {
        ""
    }
}

fn walk(
    store: &dyn BlockStore,
    a: Option<&Entry>,
    b: Option<&Entry>,
    path: &Path,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let (a_is_dir, b_is_dir) = (
        a.is_some_and(|e| e.kind == Kind::Dir),
        b.is_some_and(|e| e.kind == Kind::Dir),
    );
    if a_is_dir && b_is_dir && a.map(|e| e.content) == b.map(|e| e.content) {
        if !same_metadata(a.expect("a"), b.expect("b")) {
            println!("M {}/", path.display());
            tally.modified += 1;
        }
        return Ok(()); // Same tree reference: nothing below differs.
    }
    let listed = |e: Option<&Entry>| match e {
        Some(e) => walk::children(store, e),
        None => Ok(Vec::new()),
    };
    let mut left = listed(a)?.into_iter().peekable();
    let mut right = listed(b)?.into_iter().peekable();
    loop {
        let order = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(l), Some(r)) => l.name.cmp(&r.name),
        };
        let (l, r) = match order {
            std::cmp::Ordering::Less => (left.next(), None),
            std::cmp::Ordering::Greater => (None, right.next()),
            std::cmp::Ordering::Equal => (left.next(), right.next()),
        };
        let name = l.as_ref().or(r.as_ref()).expect("one side").name.clone();
        let p = path.join(std::ffi::OsStr::from_bytes(&name));
        match (&l, &r) {
            (Some(l), None) => {
                println!("- {}{}", p.display(), slash(l));
                tally.removed += 1;
            }
            (None, Some(r)) => {
                println!("+ {}{}", p.display(), slash(r));
                tally.added += 1;
            }
            (Some(l), Some(r)) => {
                if l.kind == Kind::Dir && r.kind == Kind::Dir {
                    walk(store, Some(l), Some(r), &p, tally)?;
                    continue;
                }
                if l.kind == Kind::Dir || r.kind == Kind::Dir {
                    println!("- {}{}", p.display(), slash(l));
                    println!("+ {}{}", p.display(), slash(r));
                    tally.removed += 1;
                    tally.added += 1;
                    continue;
                }
                if l.content != r.content || !same_metadata(l, r) {
                    println!("M {}", p.display());
                    tally.modified += 1;
                }
            }
            (None, None) => unreachable!(),
        }
        // A whole directory added or removed: list what it held.
        if let Some(d) = l.as_ref().filter(|e| e.kind == Kind::Dir && r.is_none()) {
            list_below(store, d, &p, '-', &mut tally.removed)?;
        }
        if let Some(d) = r.as_ref().filter(|e| e.kind == Kind::Dir && l.is_none()) {
            list_below(store, d, &p, '+', &mut tally.added)?;
        }
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let repo = Repo::open(args.passphrase_file.as_deref(), Access::Read)?;
    let (_, a) = repo.resolve(&args.from)?;
    let (_, b) = repo.resolve(&args.to)?;
    let mut tally = Tally::default();
    walk(
        repo.store().as_ref(),
        Some(&walk::root_entry(a.tree)),
        Some(&walk::root_entry(b.tree)),
        Path::new("/"),
        &mut tally,
    )?;
    eprintln!(
        "{} added, {} removed, {} modified",
        tally.added, tally.removed, tally.modified
    );
    repo.close()?;
    Ok(ExitCode::SUCCESS)
}
