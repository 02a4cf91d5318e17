//! Everything but file contents: owners, modes, xattrs and times;
//! symlinks, fifos and devices.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::Ctx;
use crate::format::dirent::{Entry, Kind};
use crate::fsmeta;

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
    set_xattrs(ctx, entry, path);
    fsmeta::set_mtime(path, entry.mtime_ns)
}

/// [`set_metadata`] for a regular file still open: through its
/// descriptor, so that a restore of many small files does not resolve
/// each path four more times (xattrs, rare, still go by path).
pub(super) fn set_file_metadata(
    ctx: &Ctx,
    entry: &Entry,
    file: &std::fs::File,
    path: &Path,
) -> std::io::Result<()> {
    if ctx.as_root {
        let (uid, gid) = owner(entry);
        std::os::unix::fs::fchown(file, Some(uid), Some(gid))?;
    }
    file.set_permissions(std::fs::Permissions::from_mode(entry.mode & 0o7777))?;
    set_xattrs(ctx, entry, path);
    fsmeta::set_mtime_of(file, entry.mtime_ns)
}

fn set_xattrs(ctx: &Ctx, entry: &Entry, path: &Path) {
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
