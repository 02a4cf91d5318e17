//! What a backup leaves out: `--exclude` globs, `--exclude-file` lists,
//! and directories tagged with CACHEDIR.TAG.
//!
//! A pattern without a `/` matches a name anywhere (`*.o`, `.cache`); a
//! pattern with one matches the whole absolute path (`/home/*/tmp`, or
//! `**/node_modules` for any depth). An exclude file holds one pattern
//! per line; blank lines and lines starting with `#` are ignored.

use std::path::Path;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// The signature a CACHEDIR.TAG file starts with (bford.info/cachedir).
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// See the module documentation.
pub struct Excluder {
    names: GlobSet,
    paths: GlobSet,
    exact: Vec<std::path::PathBuf>,
}

/// Why the exclusions could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ExcludeError {
    /// An `--exclude-file` could not be read.
    #[error("reading exclude file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A pattern is not a valid glob.
    #[error("bad exclude pattern {pattern:?}: {source}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        source: globset::Error,
    },
    /// The patterns could not be compiled together.
    #[error("exclude patterns: {0}")]
    Set(#[from] globset::Error),
}

fn glob(pattern: &str, literal_separator: bool) -> Result<Glob, ExcludeError> {
    GlobBuilder::new(pattern)
        .literal_separator(literal_separator)
        .backslash_escape(true)
        .build()
        .map_err(|source| ExcludeError::Pattern {
            pattern: pattern.to_string(),
            source,
        })
}

impl Excluder {
    /// From `--exclude` patterns and `--exclude-file` files.
    pub fn new(
        patterns: &[String],
        files: &[std::path::PathBuf],
    ) -> Result<Excluder, ExcludeError> {
        let mut all: Vec<String> = patterns.to_vec();
        for f in files {
            let text = std::fs::read_to_string(f).map_err(|source| ExcludeError::File {
                path: f.display().to_string(),
                source,
            })?;
            all.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for p in &all {
            let p = p.trim_end_matches('/');
            if p.contains('/') {
                paths.add(glob(p, true)?);
            } else {
                names.add(glob(p, false)?);
            }
        }
        Ok(Excluder {
            names: names.build()?,
            paths: paths.build()?,
            exact: Vec::new(),
        })
    }

    /// Also leaves out exactly `path` (absolute): eventi's own home, whose
    /// store changes while a backup runs.
    pub fn exclude_exactly(&mut self, path: std::path::PathBuf) {
        self.exact.push(path);
    }

    /// Whether `path` (absolute), whose last component is `name`, is left out.
    pub fn excludes(&self, path: &Path, name: &std::ffi::OsStr) -> bool {
        self.names.is_match(name)
            || self.paths.is_match(path)
            || self.exact.iter().any(|p| p == path)
    }
}

/// Whether `dir` holds a valid CACHEDIR.TAG: its contents are caches,
/// left out (the directory and the tag itself are kept).
pub fn is_cache_dir(dir: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; CACHEDIR_SIGNATURE.len()];
    std::fs::File::open(dir.join("CACHEDIR.TAG"))
        .and_then(|mut f| f.read_exact(&mut head))
        .map(|()| head == CACHEDIR_SIGNATURE)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_patterns_and_missing_files_are_named() {
        let err = Excluder::new(&["a[".to_string()], &[])
            .err()
            .expect("refused");
        assert!(
            matches!(&err, ExcludeError::Pattern { pattern, .. } if pattern == "a["),
            "{err}"
        );
        let missing = std::path::PathBuf::from("/nonexistent/eventi-excludes");
        let err = Excluder::new(&[], std::slice::from_ref(&missing))
            .err()
            .expect("refused");
        assert!(matches!(err, ExcludeError::File { .. }), "{err}");
        assert!(
            err.to_string().contains("/nonexistent/eventi-excludes"),
            "{err}"
        );
    }
    use std::ffi::OsStr;

    #[test]
    fn names_and_paths() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("list");
        std::fs::write(&file, "# comment\n\n*.tmp\n/srv/**/logs\n").unwrap();
        let x = Excluder::new(&["*.o".into(), ".cache/".into()], &[file]).unwrap();
        assert!(x.excludes(Path::new("/a/b/main.o"), OsStr::new("main.o")));
        assert!(x.excludes(Path::new("/a/.cache"), OsStr::new(".cache")));
        assert!(x.excludes(Path::new("/x/y.tmp"), OsStr::new("y.tmp")));
        assert!(x.excludes(Path::new("/srv/a/b/logs"), OsStr::new("logs")));
        assert!(!x.excludes(Path::new("/srv/logs2"), OsStr::new("logs2")));
        assert!(!x.excludes(Path::new("/a/main.c"), OsStr::new("main.c")));
        assert!(Excluder::new(&["a[".into()], &[]).is_err());
    }

    #[test]
    fn cachedir_tag_needs_its_signature() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_cache_dir(dir.path()));
        std::fs::write(dir.path().join("CACHEDIR.TAG"), "not a tag").unwrap();
        assert!(!is_cache_dir(dir.path()));
        std::fs::write(
            dir.path().join("CACHEDIR.TAG"),
            [CACHEDIR_SIGNATURE, b"\n# made by a test\n"].concat(),
        )
        .unwrap();
        assert!(is_cache_dir(dir.path()));
    }
}
