//! `eventi backup --dry-run`: what a backup of the same paths would walk
//! and read, found by the listing rules of a real one (excludes,
//! CACHEDIR.TAG) and, where the home has one, its cache opened read-only
//! (files whose stat matches their record are taken from it, not read),
//! without a key or a store, so that a scheduled backup's paths and
//! excludes can be checked by anyone who can read the files.

use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::exclude::Excluder;
use super::signature::kept_names;
use crate::home::cache::Cache;

/// What a backup would do with one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// A file whose content would be read.
    Read,
    /// A file the cache says is unchanged: taken from its record.
    Unchanged,
    /// Not a regular file: its metadata alone is stored.
    NotAFile,
}

/// What a dry run found.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Planned {
    /// Regular files.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Of those, files the cache says are unchanged (not to be read).
    pub unchanged_files: u64,
    /// Their bytes.
    pub unchanged_bytes: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks, fifos, devices, sockets.
    pub others: u64,
    /// Entries that could not be read (a backup would name them too).
    pub unreadable: u64,
}

/// Where a dry run reports.
pub struct Report<'a> {
    /// Each entry a backup would walk, in its order (depth-first, names
    /// in byte order), with its metadata and fate.
    pub each: &'a mut dyn FnMut(&Path, &Metadata, Fate),
    /// What could not be read.
    pub problem: &'a mut dyn FnMut(&Path, &str),
}

/// Walks `paths` as a backup would, looking files up in `cache` if given.
pub fn plan(
    paths: &[PathBuf],
    excluder: &Excluder,
    cache: Option<&Cache>,
    report: &mut Report<'_>,
) -> Planned {
    let mut planned = Planned::default();
    for path in paths {
        let name = path.file_name().unwrap_or(path.as_os_str());
        if excluder.excludes(path, name) {
            continue;
        }
        visit(path, excluder, cache, &mut planned, report);
    }
    planned
}

fn fate(path: &Path, meta: &Metadata, cache: Option<&Cache>, report: &mut Report<'_>) -> Fate {
    let Some(cache) = cache else {
        return Fate::Read;
    };
    match cache.file(path.as_os_str().as_bytes()) {
        Ok(Some(record)) if record.matches(meta) => Fate::Unchanged,
        Ok(_) => Fate::Read,
        Err(e) => {
            (report.problem)(path, &e.to_string());
            Fate::Read
        }
    }
}

fn visit(
    path: &Path,
    excluder: &Excluder,
    cache: Option<&Cache>,
    planned: &mut Planned,
    report: &mut Report<'_>,
) {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => {
            planned.unreadable += 1;
            return (report.problem)(path, &e.to_string());
        }
    };
    if meta.is_file() {
        let fate = fate(path, &meta, cache, report);
        planned.files += 1;
        planned.bytes += meta.len();
        if fate == Fate::Unchanged {
            planned.unchanged_files += 1;
            planned.unchanged_bytes += meta.len();
        }
        (report.each)(path, &meta, fate);
        return;
    }
    (report.each)(path, &meta, Fate::NotAFile);
    if meta.is_dir() {
        planned.dirs += 1;
        match kept_names(path, excluder) {
            Ok((names, _)) => {
                for name in names {
                    visit(&path.join(name), excluder, cache, planned, report);
                }
            }
            Err(e) => {
                planned.unreadable += 1;
                (report.problem)(path, &e.to_string());
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
            None,
            &mut Report {
                each: &mut |p, _, _| {
                    seen.push(p.strip_prefix(&root).unwrap().display().to_string())
                },
                problem: &mut |p, e| panic!("{}: {e}", p.display()),
            },
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
                unchanged_files: 0,
                unchanged_bytes: 0,
                dirs: 4,
                others: 1,
                unreadable: 0
            }
        );
    }
}
