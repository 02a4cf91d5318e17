//! A data directory only its owner can read: creating it (and every file
//! the engines write in it) with owner-only modes whatever the umask, and
//! auditing an existing one for modes, owners or parents that let other
//! users in. Blocks written by plan9port's tools are plain text, and the
//! key registry names every writer: both are the operator's alone.

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Mode of every directory the store creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file the store creates.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and any missing parents with mode 0700 (not touching
/// parents that exist).
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Options that create a file with mode 0600 (the umask can only remove
/// bits, so the result is at most 0600).
pub fn file_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Writes a small file, created 0600.
pub fn write_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f: File = file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all(contents)
}

/// One way in which other users can reach a data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exposure {
    /// The directory or file.
    pub path: PathBuf,
    /// What is wrong and how to fix it, in a sentence.
    pub problem: String,
}

impl std::fmt::Display for Exposure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

/// Every way other users can read, list or change `dir`: the directory
/// or anything in it with group or other permission bits, or owned by a
/// user other than the directory's owner, and any parent that a user
/// other than its owner and root may write without the sticky bit (who
/// can write a parent can swap the data directory for their own, the
/// check OpenSSH's StrictModes makes). Entries that cannot be examined
/// are reported too. An empty answer means the directory is private.
pub fn audit(dir: &Path) -> Vec<Exposure> {
    let mut found = Vec::new();
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) => {
            found.push(Exposure {
                path: dir.to_path_buf(),
                problem: format!("cannot be examined: {e}"),
            });
            return found;
        }
    };
    let owner = meta.uid();
    audit_tree(dir, owner, &mut found);
    audit_parents(dir, &mut found);
    found
}

fn audit_tree(path: &Path, owner: u32, found: &mut Vec<Exposure>) {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => {
            found.push(Exposure {
                path: path.to_path_buf(),
                problem: format!("cannot be examined: {e}"),
            });
            return;
        }
    };
    let mode = meta.mode() & 0o7777;
    // A socket is reached by connect, which needs write permission: the
    // same rule as for files.
    if mode & 0o077 != 0 && !meta.file_type().is_symlink() {
        let kind = if meta.is_dir() { "directory" } else { "file" };
        let want = if meta.is_dir() { DIR_MODE } else { FILE_MODE };
        found.push(Exposure {
            path: path.to_path_buf(),
            problem: format!(
                "{kind} mode {mode:04o} lets other users in (chmod {want:04o}, or chmod -R go-rwx on the data directory)"
            ),
        });
    }
    if meta.uid() != owner {
        found.push(Exposure {
            path: path.to_path_buf(),
            problem: format!(
                "owned by uid {} while the data directory is owned by uid {owner} (chown it to the server's user)",
                meta.uid()
            ),
        });
    }
    if meta.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(e) => e,
            Err(e) => {
                found.push(Exposure {
                    path: path.to_path_buf(),
                    problem: format!("cannot be listed: {e}"),
                });
                return;
            }
        };
        for entry in entries.flatten() {
            audit_tree(&entry.path(), owner, found);
        }
    }
}

fn audit_parents(dir: &Path, found: &mut Vec<Exposure>) {
    let Ok(absolute) = std::fs::canonicalize(dir) else {
        return;
    };
    let mut parent = absolute.parent();
    while let Some(p) = parent {
        if let Ok(meta) = std::fs::metadata(p) {
            let mode = meta.mode();
            let sticky = mode & 0o1000 != 0;
            if mode & 0o022 != 0 && !sticky {
                found.push(Exposure {
                    path: p.to_path_buf(),
                    problem: format!(
                        "parent directory mode {:04o} lets other users replace the data directory (chmod go-w, or set the sticky bit)",
                        mode & 0o7777
                    ),
                });
            }
        }
        parent = p.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn created_private_and_audited_clean() {
        let tmp = tempfile::tempdir().unwrap();
        chmod(tmp.path(), 0o700);
        let dir = tmp.path().join("a/b");
        create_dir(&dir).unwrap();
        write_file(&dir.join("f"), b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        assert_eq!(mode(&dir.join("f")), 0o600);
        assert_eq!(audit(&dir), vec![]);
    }

    #[test]
    fn readable_entries_and_writable_parents_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let parent = tmp.path().join("open");
        create_dir(&parent).unwrap();
        let dir = parent.join("data");
        create_dir(&dir).unwrap();
        write_file(&dir.join("secret"), b"x").unwrap();
        chmod(&dir.join("secret"), 0o644);
        chmod(&dir, 0o755);
        chmod(&parent, 0o777);
        let found = audit(&dir);
        let paths: Vec<&Path> = found.iter().map(|e| e.path.as_path()).collect();
        assert!(paths.contains(&dir.as_path()), "{found:?}");
        assert!(paths.contains(&dir.join("secret").as_path()), "{found:?}");
        let parent = std::fs::canonicalize(&parent).unwrap();
        assert!(paths.contains(&parent.as_path()), "{found:?}");
        // The sticky bit (as on /tmp) makes a writable parent safe.
        chmod(&parent, 0o1777);
        chmod(&dir, 0o700);
        chmod(&dir.join("secret"), 0o600);
        assert_eq!(audit(&dir), vec![], "sticky parent");
    }
}
