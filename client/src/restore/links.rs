//! Hard links, made once the files they name exist (or, when the first
//! name is outside what is restored, by restoring that file here).

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

use super::file::restore_file;
use super::Ctx;
use crate::format::dirent::Entry;
use crate::walk;

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
            let Some(tree) = ctx.tree else {
                anyhow::bail!("its first name {} is outside what was shared", t.display());
            };
            let mut first = walk::lookup(ctx.store, tree, t)?;
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
