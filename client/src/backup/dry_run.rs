//! `eventi backup --dry-run`: what a backup of the same paths would read,
//! found by the listing rules of a real one (excludes, CACHEDIR.TAG),
//! without a key, a store or the cache, so that a scheduled backup's
//! paths and excludes can be checked by anyone who can read the files.

use std::fs::Metadata;
use std::path::{Path, PathBuf};

use super::exclude::Excluder;
use super::signature::kept_names;

/// What a dry run found.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Planned {
    /// Regular files.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks, fifos, devices, sockets.
    pub others: u64,
    /// Entries that could not be read (a backup would name them too).
    pub unreadable: u64,
}

/// Calls `each` with every entry under `paths` a backup would read, in
/// the order it would (depth-first, names in byte order), with its
/// metadata; `problem` with what could not be read.
pub fn plan(
    paths: &[PathBuf],
    excluder: &Excluder,
    each: &mut dyn FnMut(&Path, &Metadata),
    problem: &mut dyn FnMut(&Path, &std::io::Error),
) -> Planned {
    let mut planned = Planned::default();
    for path in paths {
        let name = path.file_name().unwrap_or(path.as_os_str());
        if excluder.excludes(path, name) {
            continue;
        }
        visit(path, excluder, &mut planned, each, problem);
    }
    planned
}

fn visit(
    path: &Path,
    excluder: &Excluder,
    planned: &mut Planned,
    each: &mut dyn FnMut(&Path, &Metadata),
    problem: &mut dyn FnMut(&Path, &std::io::Error),
) {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => {
            planned.unreadable += 1;
            return problem(path, &e);
        }
    };
    each(path, &meta);
    if meta.is_file() {
        planned.files += 1;
        planned.bytes += meta.len();
    } else if meta.is_dir() {
        planned.dirs += 1;
        match kept_names(path, excluder) {
            Ok((names, _)) => {
                for name in names {
                    visit(&path.join(name), excluder, planned, each, problem);
                }
            }
            Err(e) => {
                planned.unreadable += 1;
                problem(path, &e);
            }
        }
    } else {
        planned.others += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excluded_and_cached_entries_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("src");
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::create_dir_all(root.join("cache")).unwrap();
        std::fs::write(root.join("a.txt"), "aaa").unwrap();
        std::fs::write(root.join("b.log"), "bbbb").unwrap();
        std::fs::write(root.join("sub/deeper/c.txt"), "cc").unwrap();
        std::fs::write(
            root.join("cache/CACHEDIR.TAG"),
            "Signature: 8a477f597d28d172789f06886806bc55\n",
        )
        .unwrap();
        std::fs::write(root.join("cache/junk"), "junk").unwrap();
        std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
        let excluder = Excluder::new(&["*.log".to_string()], &[]).unwrap();
        let mut seen = Vec::new();
        let planned = plan(
            std::slice::from_ref(&root),
            &excluder,
            &mut |p, _| seen.push(p.strip_prefix(&root).unwrap().display().to_string()),
            &mut |p, e| panic!("{}: {e}", p.display()),
        );
        assert_eq!(
            seen,
            [
                "",
                "a.txt",
                "cache",
                "cache/CACHEDIR.TAG",
                "link",
                "sub",
                "sub/deeper",
                "sub/deeper/c.txt"
            ]
        );
        assert_eq!(
            planned,
            Planned {
                files: 3,
                bytes: 3 + 44 + 2,
                dirs: 4,
                others: 1,
                unreadable: 0
            }
        );
    }
}
