//! Directory signatures: one hash of everything a directory's stored tree
//! depends on, all the way down, from names and stats alone. A directory
//! whose signature equals the one recorded in the cache with its listing
//! is taken whole from the record: its entries are not visited, its
//! files not looked up, its listing neither encoded nor sealed again
//! (bupstash skips unchanged directories the same way).
//!
//! What goes in, per entry kept by the walk, in name order: the name, the
//! device and inode, mode, owner (number and name), size, link count,
//! device number, and modification and status-change times to the ns;
//! for a subdirectory, its own signature. The status-change time moves
//! with every change of content, mode, owner, extended attribute or link
//! count, and a symlink's target cannot change without a new inode, so
//! equal signatures mean equal listings, given equal file contents, which
//! the stat cache already trusts on the same fields.
//!
//! No signature (so no reuse, and no record) for a directory where
//! anything is uncertain: an entry that could not be read, a file with
//! links outside the directory (which of its names is stored whole, and
//! which as a link to it, depends on the rest of the walk; links all in
//! one directory, as a package's aliases usually are, are fine: adding
//! or removing one elsewhere changes the file's link count and
//! status-change time), or an entry changed within [`SETTLE_NS`](super::files::SETTLE_NS) of the backup's
//! start (a later change in the same timestamp tick would not show), and
//! none for any directory above one.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::sync::Mutex;

use rayon::prelude::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::exclude::{self, Excluder};
use crate::fsmeta::{self, Names};

/// A directory's signature.
pub type Signature = [u8; 32];

/// Domain label, so no other hash of the same bytes can be mistaken for
/// a signature.
const LABEL: &[u8] = b"eventi directory signature v1";

/// Builds one directory's signature from its entries, in name order.
pub struct Signer {
    hasher: Sha256,
    certain: bool,
    settled_before_ns: i64,
    /// Files with several links, by (device, inode): their link count
    /// and the links met here.
    links: HashMap<(u64, u64), (u64, u64)>,
}

impl Signer {
    /// A signer for one directory; entries changed at or after
    /// `settled_before_ns` leave it without a signature.
    pub fn new(settled_before_ns: i64) -> Signer {
        let mut hasher = Sha256::new();
        hasher.update(LABEL);
        Signer {
            hasher,
            certain: true,
            settled_before_ns,
            links: HashMap::new(),
        }
    }

    /// Adds an entry other than a directory.
    pub fn entry(&mut self, name: &[u8], meta: &Metadata, names: &Names) {
        if !meta.is_dir() && meta.nlink() > 1 {
            let met = self
                .links
                .entry((meta.dev(), meta.ino()))
                .or_insert((meta.nlink(), 0));
            met.1 += 1;
        }
        self.stat(name, meta, names);
    }

    /// Adds a subdirectory with its own signature (`None`: it has none).
    pub fn dir(&mut self, name: &[u8], meta: &Metadata, names: &Names, sub: Option<&Signature>) {
        self.stat(name, meta, names);
        match sub {
            Some(s) => self.hasher.update(s),
            None => self.certain = false,
        }
    }

    /// Something in the directory could not be read.
    pub fn uncertain(&mut self) {
        self.certain = false;
    }

    /// The signature, if nothing made it uncertain.
    pub fn finish(self) -> Option<Signature> {
        let links_all_here = self.links.values().all(|(count, met)| count == met);
        (self.certain && links_all_here).then(|| self.hasher.finalize().into())
    }

    fn stat(&mut self, name: &[u8], meta: &Metadata, names: &Names) {
        let (mtime, ctime) = (fsmeta::mtime_ns(meta), fsmeta::ctime_ns(meta));
        if mtime.max(ctime) >= self.settled_before_ns {
            self.certain = false;
        }
        let h = &mut self.hasher;
        h.update((name.len() as u64).to_be_bytes());
        h.update(name);
        for n in [
            meta.dev(),
            meta.ino(),
            u64::from(meta.mode()),
            u64::from(meta.uid()),
            u64::from(meta.gid()),
            meta.size(),
            meta.nlink(),
            meta.rdev(),
        ] {
            h.update(n.to_be_bytes());
        }
        h.update(mtime.to_be_bytes());
        h.update(ctime.to_be_bytes());
        for owner in [names.user(meta.uid()), names.group(meta.gid())] {
            h.update((owner.len() as u64).to_be_bytes());
            h.update(owner.as_bytes());
        }
    }
}

/// The entries of `dir` the walk keeps, in name order: what is listed,
/// less what `excluder` leaves out, and only `CACHEDIR.TAG` in a tagged
/// cache directory. `None` if it cannot be listed completely.
pub fn kept_names(dir: &Path, excluder: &Excluder) -> std::io::Result<(Vec<OsString>, bool)> {
    let mut names: Vec<OsString> = Vec::new();
    let mut complete = true;
    for item in std::fs::read_dir(dir)? {
        match item {
            Ok(e) => names.push(e.file_name()),
            Err(_) => complete = false,
        }
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let caches_only = exclude::is_cache_dir(dir);
    names.retain(|name| {
        let only_the_tag_kept = caches_only && name != "CACHEDIR.TAG";
        !only_the_tag_kept && !excluder.excludes(&dir.join(name), name)
    });
    Ok((names, complete))
}

/// Signs `dir` and every directory below it, ahead of the walk: the
/// signatures of those that have one go into `signed`, by path.
/// Directories are listed and their entries stat-ed in parallel on the
/// current rayon pool: on a cold cache the walk is a chain of disk waits,
/// and a pool wider than the cores keeps several in flight.
pub fn sign_tree(
    dir: &Path,
    excluder: &Excluder,
    names: &Names,
    settled_before_ns: i64,
    signed: &Mutex<HashMap<Vec<u8>, Signature>>,
) -> Option<Signature> {
    let mut signer = Signer::new(settled_before_ns);
    let Ok((entries, complete)) = kept_names(dir, excluder) else {
        return None;
    };
    if !complete {
        signer.uncertain();
    }
    let stated: Vec<(OsString, std::io::Result<Metadata>, Option<Signature>)> = entries
        .into_par_iter()
        .map(|name| {
            let child = dir.join(&name);
            let meta = std::fs::symlink_metadata(&child);
            let sub = match &meta {
                Ok(m) if m.is_dir() => {
                    sign_tree(&child, excluder, names, settled_before_ns, signed)
                }
                _ => None,
            };
            (name, meta, sub)
        })
        .collect();
    for (name, meta, sub) in stated {
        let meta = match meta {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => {
                signer.uncertain();
                continue;
            }
        };
        if meta.is_dir() {
            signer.dir(name.as_bytes(), &meta, names, sub.as_ref());
        } else {
            signer.entry(name.as_bytes(), &meta, names);
        }
    }
    let signature = signer.finish()?;
    signed
        .lock()
        .expect("signatures")
        .insert(dir.as_os_str().as_bytes().to_vec(), signature);
    Some(signature)
}

/// Threads that sign trees: several times the cores, since they mostly
/// wait on the disk when the cache is cold.
pub const SIGNING_THREADS: usize = 8;

/// Signs every directory path of `paths` that `worth_it` accepts, on a
/// pool of [`SIGNING_THREADS`]: the signatures, by path.
pub fn sign_trees(
    paths: &[&Path],
    excluder: &Excluder,
    names: &Names,
    settled_before_ns: i64,
) -> HashMap<Vec<u8>, Signature> {
    let signed = Mutex::new(HashMap::new());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(SIGNING_THREADS)
        .thread_name(|i| format!("eventi-sign-{i}"))
        .build();
    let sign = || {
        paths.par_iter().for_each(|p| {
            sign_tree(p, excluder, names, settled_before_ns, &signed);
        })
    };
    match pool {
        Ok(pool) => pool.install(sign),
        Err(_) => sign(),
    }
    signed.into_inner().expect("signatures")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn sign(dir: &Path) -> (Option<Signature>, HashMap<Vec<u8>, Signature>) {
        sign_at(dir, i64::MAX)
    }

    fn sign_at(
        dir: &Path,
        settled_before_ns: i64,
    ) -> (Option<Signature>, HashMap<Vec<u8>, Signature>) {
        let signed = Mutex::new(HashMap::new());
        let excluder = Excluder::new(&[], &[]).unwrap();
        let names = Names::default();
        let s = sign_tree(dir, &excluder, &names, settled_before_ns, &signed);
        (s, signed.into_inner().unwrap())
    }

    fn set_old(path: &Path) {
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn a_signature_moves_with_any_change_below_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::create_dir_all(root.join("c")).unwrap();
        fs::write(root.join("a/b/deep"), b"one").unwrap();
        fs::write(root.join("c/file"), b"two").unwrap();
        let (first, signed) = sign(root);
        let first = first.expect("a signature");
        assert_eq!(signed.len(), 4, "the root, a, a/b and c");
        assert_eq!(sign(root).0, Some(first), "nothing changed");

        let c_before = signed[root.join("c").as_os_str().as_bytes()];
        fs::write(root.join("a/b/deep"), b"ONE").unwrap();
        let (second, signed) = sign(root);
        assert_ne!(second, Some(first), "a change two levels down");
        assert_eq!(
            signed[root.join("c").as_os_str().as_bytes()],
            c_before,
            "a sibling keeps its signature"
        );
        fs::write(root.join("c/new"), b"").unwrap();
        assert_ne!(sign(root).0, second, "an entry added");
    }

    #[test]
    fn no_signature_where_the_walk_could_differ() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["linked", "elsewhere", "pair", "plain"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("linked/one"), b"x").unwrap();
        fs::hard_link(root.join("linked/one"), root.join("elsewhere/two")).unwrap();
        fs::write(root.join("pair/a"), b"z").unwrap();
        fs::hard_link(root.join("pair/a"), root.join("pair/b")).unwrap();
        fs::write(root.join("plain/file"), b"y").unwrap();
        let (top, signed) = sign(root);
        assert_eq!(top, None, "a directory above a link to another one");
        let has = |d: &str| signed.contains_key(root.join(d).as_os_str().as_bytes());
        assert!(
            !has("linked") && !has("elsewhere"),
            "linked across directories"
        );
        assert!(has("pair"), "every link in one directory");
        assert!(has("plain"));

        // Changed within the settling time of the backup's start.
        let recent = dir.path().join("plain/file");
        let now = fsmeta::now_ns();
        let plain = root.join("plain");
        assert_eq!(
            sign_at(&plain, now - 1_000_000_000).0,
            None,
            "changed within it"
        );
        assert!(
            sign_at(&plain, now + 1_000_000_000).0.is_some(),
            "the same, settled"
        );
        set_old(&recent);
        // Its status-change time is still recent.
        let s = sign_at(&plain, now - 60_000_000_000).0;
        assert_eq!(s, None);
    }
}
