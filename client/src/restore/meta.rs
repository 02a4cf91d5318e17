//! Everything but file contents: owners, modes, xattrs and times; symlinks,
//! fifos and devices; hard links, made once the files they name exist.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

use super::file::restore_file;
use super::Ctx;
use crate::dirent::{Entry, Kind};
use crate::fsmeta;
use crate::walk;

fn owner(entry: &Entry) -> (u32, u32) {
    let uid = (!entry.user.is_empty())
        .then(|| fsmeta::uid_of(&entry.user))
        .flatten()
        .unwrap_or(entry.uid);
    let gid = (!entry.group.is_empty())
        .then(|| fsmeta::gid_of(&entry.group))
        .flatten()
        .unwrap_or(entry.gid);
    (uid, gid)
}

pub(super) fn set_metadata(ctx: &Ctx, entry: &Entry, path: &Path) -> std::io::Result<()> {
    if ctx.as_root {
        let (uid, gid) = owner(entry);
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    }
    if entry.kind != Kind::Symlink {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(entry.mode & 0o7777))?;
    }
    for (name, value) in &entry.xattrs {
        if let Err(e) = fsmeta::set_xattr(path, name, value) {
            (ctx.warn)(
                path,
                &format!(
                    "extended attribute {} not set: {e}",
                    String::from_utf8_lossy(name)
                ),
            );
        }
    }
    fsmeta::set_mtime(path, entry.mtime_ns)
}

/// Symlinks, fifos and devices. `Ok(false)` if already there.
pub(super) fn restore_special(ctx: &Ctx, entry: &Entry, dest: &Path) -> std::io::Result<bool> {
    if let Ok(m) = std::fs::symlink_metadata(dest) {
        let same = match entry.kind {
            Kind::Symlink => {
                m.file_type().is_symlink()
                    && std::fs::read_link(dest)?.as_os_str().as_bytes() == entry.target
            }
            _ => (m.mode() & libc::S_IFMT) == (entry.mode & libc::S_IFMT) && m.rdev() == entry.rdev,
        };
        if same {
            return Ok(false);
        }
        if !ctx.options.overwrite {
            return Err(std::io::Error::other(
                "exists and differs (use --overwrite)",
            ));
        }
        if m.is_dir() {
            std::fs::remove_dir_all(dest)?;
        } else {
            std::fs::remove_file(dest)?;
        }
    }
    match entry.kind {
        Kind::Symlink => {
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&entry.target), dest)?
        }
        _ => fsmeta::mknod(dest, entry.mode, entry.rdev)?,
    }
    set_metadata(ctx, entry, dest)?;
    Ok(true)
}

/// Where the file a hard link names was restored; `None` if outside.
fn link_source(ctx: &Ctx, target: &[u8]) -> Option<PathBuf> {
    let t = Path::new(std::ffi::OsStr::from_bytes(target));
    let rest = t.strip_prefix(&ctx.from).ok()?;
    Some(if rest.as_os_str().is_empty() {
        ctx.to.clone()
    } else {
        ctx.to.join(rest)
    })
}

pub(super) fn restore_link(ctx: &Ctx, entry: &Entry, dest: &Path) {
    let result = (|| -> anyhow::Result<bool> {
        let Some(source) = link_source(ctx, &entry.target) else {
            // The first name is outside what is restored: copy the file.
            let t = Path::new(std::ffi::OsStr::from_bytes(&entry.target));
            let mut first = walk::lookup(ctx.store, ctx.tree, t)?;
            first.name = entry.name.clone();
            restore_file(ctx, &first, dest)?;
            return Ok(true);
        };
        let src = std::fs::symlink_metadata(&source)?;
        if let Ok(m) = std::fs::symlink_metadata(dest) {
            if m.ino() == src.ino() && m.dev() == src.dev() {
                return Ok(false);
            }
            if !ctx.options.overwrite {
                anyhow::bail!("exists and differs (use --overwrite)");
            }
            std::fs::remove_file(dest)?;
        }
        std::fs::hard_link(&source, dest)?;
        Ok(true)
    })();
    match result {
        Ok(true) => {
            ctx.others.fetch_add(1, Relaxed);
        }
        Ok(false) => {
            ctx.skipped.fetch_add(1, Relaxed);
        }
        Err(e) => ctx.error(dest, &format!("hard link not restored: {e:#}")),
    }
}
