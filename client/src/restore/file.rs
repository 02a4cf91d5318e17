//! Regular files: written under a temporary name, checked, renamed into
//! place; or, when already there, recognised (and with `--verify`,
//! compared byte for byte with the snapshot) and skipped.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

use rayon::prelude::*;

use super::meta::set_file_metadata;
use super::Ctx;
use crate::format::block::Ref;
use crate::format::dirent::Entry;
use crate::format::tree::Leaf;
use crate::fsmeta;
use crate::stream;

/// Leaves fetched in parallel per batch of a file: at most this many...
const BATCH: usize = 64;
/// ...and about this many bytes (leaves hold up to 1 MiB).
const BATCH_BYTES: u64 = 8 << 20;

/// How temporary restore files start.
pub const TEMP_PREFIX: &str = ".eventi-restore-";

/// The temporary name a file is written under before it is renamed into
/// place: fixed per name (a rerun reuses it) and short (names may already
/// be 255 bytes long).
fn temp_path(dest: &Path) -> PathBuf {
    use sha2::Digest;
    let name = dest.file_name().map(|n| n.as_bytes()).unwrap_or(b"");
    let digest = sha2::Sha256::digest(name);
    dest.with_file_name(format!("{TEMP_PREFIX}{}", hex::encode(&digest[..8])))
}

/// Restores the file `entry` at `dest`, or skips it if it is already
/// there: the right size and mtime (what a finished restore leaves) and,
/// with `--verify`, the right content.
pub(super) fn restore_file(ctx: &Ctx, entry: &Entry, dest: &Path) -> anyhow::Result<()> {
    let content = entry
        .content
        .ok_or_else(|| anyhow::anyhow!("file entry without content"))?;
    if let Ok(m) = std::fs::symlink_metadata(dest) {
        let looks_restored =
            m.is_file() && m.len() == entry.size && fsmeta::mtime_ns(&m) == entry.mtime_ns;
        let compare = looks_restored && ctx.options.verify;
        if looks_restored && (!compare || same_content(ctx, &content, entry.size, dest)?) {
            ctx.skipped.fetch_add(1, Relaxed);
            if compare {
                ctx.verified.fetch_add(1, Relaxed);
            }
            ctx.counters.bytes_done.fetch_add(entry.size, Relaxed);
            return Ok(());
        }
        if !ctx.options.overwrite {
            if compare {
                anyhow::bail!(
                    "exists with the snapshot's size and mtime but other content (use --overwrite)"
                );
            }
            anyhow::bail!("exists and differs (use --overwrite)");
        }
    }
    let tmp = temp_path(dest);
    let result = write_file(ctx, &content, entry, &tmp)
        .and_then(|file| set_file_metadata(ctx, entry, &file, &tmp).map_err(Into::into))
        .and_then(|()| {
            if ctx.options.overwrite {
                if let Ok(m) = std::fs::symlink_metadata(dest) {
                    if m.is_dir() {
                        std::fs::remove_dir_all(dest)?;
                    }
                }
            }
            std::fs::rename(&tmp, dest)?;
            Ok(())
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    } else {
        ctx.files.fetch_add(1, Relaxed);
        ctx.bytes.fetch_add(entry.size, Relaxed);
    }
    result
}

/// Writes the file's content at `tmp`; the file, still open.
fn write_file(
    ctx: &Ctx,
    content: &Ref,
    entry: &Entry,
    tmp: &Path,
) -> anyhow::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)?;
    let size = each_chunk(ctx, content, &mut |offset, chunk| {
        write_leaving_holes(&file, chunk, offset)?;
        ctx.counters
            .bytes_done
            .fetch_add(chunk.len() as u64, Relaxed);
        Ok(())
    })?;
    if size != entry.size {
        anyhow::bail!(
            "content is {size} bytes, the entry says {}: the snapshot is damaged",
            entry.size
        );
    }
    file.set_len(size)?;
    Ok(file)
}

/// Granule of the holes a restore leaves: a filesystem block.
const HOLE_GRANULE: usize = 4096;

/// Writes `data` at `offset`, skipping every [`HOLE_GRANULE`] of zeros,
/// so that sparse files come back sparse (a leaf holds up to 1 MiB, with
/// data and zeros side by side). Nonzero runs go in one write each.
fn write_leaving_holes(file: &std::fs::File, data: &[u8], offset: u64) -> std::io::Result<()> {
    let mut run: Option<usize> = None;
    let mut at = 0;
    for granule in data.chunks(HOLE_GRANULE) {
        let zeros = granule.iter().all(|b| *b == 0);
        match (zeros, run) {
            (false, None) => run = Some(at),
            (true, Some(start)) => {
                file.write_all_at(&data[start..at], offset + start as u64)?;
                run = None;
            }
            _ => {}
        }
        at += granule.len();
    }
    if let Some(start) = run {
        file.write_all_at(&data[start..], offset + start as u64)?;
    }
    Ok(())
}

/// The sink's signal that the file on disk differs: not an error, a
/// reason to stop reading.
#[derive(Debug, thiserror::Error)]
#[error("differs")]
struct Differs;

/// Whether the `size`-byte file at `path` holds exactly the stream
/// `content`. Every block is fetched and checked as for a restore, so a
/// damaged snapshot is an error here too.
fn same_content(ctx: &Ctx, content: &Ref, size: u64, path: &Path) -> anyhow::Result<bool> {
    let file = std::fs::File::open(path)?;
    let mut on_disk = Vec::new();
    let compared = each_chunk(ctx, content, &mut |offset, chunk| {
        if offset + chunk.len() as u64 > size {
            return Err(Differs.into());
        }
        on_disk.resize(chunk.len(), 0);
        file.read_exact_at(&mut on_disk, offset)?;
        if on_disk != chunk {
            return Err(Differs.into());
        }
        Ok(())
    });
    match compared {
        Ok(total) => Ok(total == size),
        Err(e) if e.is::<Differs>() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Hands every leaf's bytes of the stream `content` to `each` with their
/// offset, in order, fetching up to [`BATCH`] leaves ([`BATCH_BYTES`]) at
/// a time in parallel. Returns the stream's length; stops at the first
/// error, from a block or from `each`.
fn each_chunk(
    ctx: &Ctx,
    content: &Ref,
    each: &mut dyn FnMut(u64, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut offset = 0u64;
    let mut batch: Vec<(Leaf, Option<Vec<u8>>)> = Vec::with_capacity(BATCH);
    let mut flush = |batch: &mut Vec<(Leaf, Option<Vec<u8>>)>| -> anyhow::Result<()> {
        let chunks: Vec<Vec<u8>> = std::mem::take(batch)
            .into_par_iter()
            .map(|(leaf, data)| match data {
                Some(d) => Ok(d),
                None => stream::fetch_leaf(ctx.store, &leaf),
            })
            .collect::<Result<_, _>>()?;
        for c in chunks {
            each(offset, &c)?;
            offset += c.len() as u64;
        }
        Ok(())
    };
    let mut failed: Option<anyhow::Error> = None;
    let mut batch_bytes = 0u64;
    stream::for_each_leaf(ctx.store, content, &mut |leaf, data| {
        batch_bytes += leaf.size.unwrap_or(0);
        batch.push((leaf, data));
        if batch.len() == BATCH || batch_bytes >= BATCH_BYTES {
            batch_bytes = 0;
            if let Err(e) = flush(&mut batch) {
                failed = Some(e);
                return Err(stream::TreeError::Io(std::io::Error::other("stopped")));
            }
        }
        Ok(())
    })
    .map_err(|e| match failed.take() {
        Some(f) => f,
        None => e.into(),
    })?;
    flush(&mut batch)?;
    Ok(offset)
}
