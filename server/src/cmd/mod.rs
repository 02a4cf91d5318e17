//! One module per command.

pub mod bench;
pub mod compact;
pub mod identity;
pub mod keys;
pub mod serve;
pub mod verify;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Refuses to open an existing data directory as a user other than its
/// owner: files a command writes there (RocksDB's manifest and log, a new
/// key) would then belong to that user, and a server running as the
/// owner could no longer open them. Root is refused too, for that reason.
pub fn require_owner(data: &Path) -> anyhow::Result<()> {
    let meta = match std::fs::metadata(data) {
        Ok(m) => m,
        // A new directory is created by, and so belongs to, this user.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(anyhow::anyhow!(
                "{}: {e} (only the server's user and root may manage it)",
                data.display()
            ))
        }
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    anyhow::ensure!(
        meta.uid() == me,
        "{} belongs to uid {}, not to this user (uid {me}): run this command as the server's user (e.g. sudo -u <user> eventi-server ...), so that what it writes stays readable to the server",
        data.display(),
        meta.uid()
    );
    Ok(())
}
