//! The admin plane of a running server: a Unix domain socket,
//! `admin.sock` in the data directory, that answers only the user the
//! server runs as and root. Three locks on one door: the data directory
//! is 0700, the socket 0600, and the server checks each peer's uid with
//! SO_PEERCRED before it reads a byte, so a mode loosened by hand still
//! lets nobody else in. No secret exists to leak, and nothing listens on
//! the network (docs/SECURITY.md gives the reasons).
//!
//! The exchange is one JSON line each way per connection: a
//! [`KeyCommand`], then an [`AdminReply`] (docs/FORMAT.md pins both).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::{apply, KeyCommand, KeyReport};
use crate::keys::KeyRegistry;
use crate::metrics::Metrics;

/// The socket's file name in the data directory.
pub const SOCKET_NAME: &str = "admin.sock";

/// Longest request line accepted (a key line and a name fit many times).
const MAX_REQUEST: u64 = 64 << 10;

/// Time a peer has to send its request, and a caller to wait for a reply.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Longest path `bind` and `connect` take (sun_path holds 108 bytes with
/// its NUL); longer ones are reached through `/proc/self/fd`.
const MAX_SOCKET_PATH: usize = 100;

/// The server's answer to one [`KeyCommand`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminReply {
    /// The command ran; the keys it touched (or all, for `list`).
    Ok(Vec<KeyReport>),
    /// The command was refused or failed, and why.
    Error(String),
}

/// What can go wrong calling a running server's admin socket.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No server answers on this data directory (no socket, or a socket
    /// left by a server that is gone): the caller may open it itself.
    #[error("no server is running on {0}")]
    NotRunning(PathBuf),
    /// The caller may not use the socket.
    #[error(
        "permission denied on {0}: only the user the server runs as, and root, may manage its keys"
    )]
    Denied(PathBuf),
    /// The server refused or failed the command.
    #[error("the server refused: {0}")]
    Refused(String),
    /// The exchange failed.
    #[error("admin socket {path}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// The socket's path for the data directory `data`.
pub fn socket_path(data: &Path) -> PathBuf {
    data.join(SOCKET_NAME)
}

/// Runs `f` with a path to `data`'s socket that `bind` and `connect`
/// accept, however long `data`'s own path is.
fn with_short_path<T>(
    data: &Path,
    f: impl FnOnce(&Path) -> std::io::Result<T>,
) -> std::io::Result<T> {
    let full = socket_path(data);
    if full.as_os_str().len() <= MAX_SOCKET_PATH {
        return f(&full);
    }
    // The directory's descriptor stays open while `f` runs.
    let dir = File::open(data)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}/{SOCKET_NAME}", dir.as_raw_fd()));
    let result = f(&short);
    drop(dir);
    result
}

/// The admin socket of a running server; removes its file on drop.
pub struct AdminSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl AdminSocket {
    /// Binds `admin.sock` in `data`, replacing a file a crashed server
    /// left (the caller holds the store's lock, so no other server is
    /// using this directory). Call from within the async runtime.
    pub fn bind(data: &Path) -> std::io::Result<AdminSocket> {
        use std::os::unix::fs::PermissionsExt;
        let path = socket_path(data);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = with_short_path(data, |p| {
            let l = UnixListener::bind(p)?;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))?;
            Ok(l)
        })?;
        Ok(AdminSocket { listener, path })
    }

    /// Answers operators until `stop` completes.
    pub async fn serve(
        self,
        keys: Arc<KeyRegistry>,
        metrics: Arc<Metrics>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(answer(stream, Arc::clone(&keys), Arc::clone(&metrics)));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "admin socket accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The uid this process runs as.
fn own_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether a peer with `uid` may manage keys: the server's user or root.
pub fn is_operator(uid: u32) -> bool {
    uid == 0 || uid == own_uid()
}

async fn answer(mut stream: UnixStream, keys: Arc<KeyRegistry>, metrics: Arc<Metrics>) {
    let uid = match stream.peer_cred() {
        Ok(cred) => cred.uid(),
        Err(e) => {
            tracing::warn!(error = %e, "admin socket: cannot read the peer's credentials; refused");
            return;
        }
    };
    let reply = if is_operator(uid) {
        match tokio::time::timeout(TIMEOUT, read_request(&mut stream)).await {
            Ok(Ok(cmd)) => {
                tracing::info!(uid, command = cmd.verb(), "admin command");
                match tokio::task::spawn_blocking(move || apply(&keys, &cmd)).await {
                    Ok(Ok(reports)) => AdminReply::Ok(reports),
                    Ok(Err(e)) => AdminReply::Error(e.to_string()),
                    Err(e) => AdminReply::Error(format!("internal error: {e}")),
                }
            }
            Ok(Err(e)) => AdminReply::Error(e),
            Err(_) => AdminReply::Error(format!("no request within {} s", TIMEOUT.as_secs())),
        }
    } else {
        metrics.admin_refused.inc();
        tracing::warn!(
            uid,
            "admin socket: refused a peer that is neither the server's user nor root"
        );
        AdminReply::Error(format!(
            "uid {uid} may not manage keys: only the server's user (uid {}) and root may",
            own_uid()
        ))
    };
    let mut line = serde_json::to_vec(&reply).expect("replies serialize");
    line.push(b'\n');
    let _ = tokio::time::timeout(TIMEOUT, stream.write_all(&line)).await;
    let _ = stream.shutdown().await;
}

async fn read_request(stream: &mut UnixStream) -> Result<KeyCommand, String> {
    use tokio::io::AsyncReadExt;
    let mut line = Vec::new();
    let mut reader = BufReader::new(stream).take(MAX_REQUEST + 1);
    reader
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| format!("reading the request: {e}"))?;
    if line.len() as u64 > MAX_REQUEST {
        return Err(format!("request longer than {MAX_REQUEST} bytes"));
    }
    serde_json::from_slice(&line).map_err(|e| format!("malformed request: {e}"))
}

/// Sends `cmd` to the server running on `data` and waits for its answer
/// (blocking; for the `keys` command).
pub fn call(data: &Path, cmd: &KeyCommand) -> Result<Vec<KeyReport>, CallError> {
    use std::io::{BufRead, Write};
    let path = socket_path(data);
    let io = |source| CallError::Io {
        path: path.clone(),
        source,
    };
    let stream = match with_short_path(data, |p| std::os::unix::net::UnixStream::connect(p)) {
        Ok(s) => s,
        Err(e) => {
            return Err(match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    CallError::NotRunning(data.to_path_buf())
                }
                std::io::ErrorKind::PermissionDenied => CallError::Denied(path),
                _ => io(e),
            })
        }
    };
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let mut line = serde_json::to_vec(cmd).expect("commands serialize");
    line.push(b'\n');
    // A refused peer gets its answer without being read: the write may
    // then fail (EPIPE) while the answer waits to be read.
    let written = (&stream).write_all(&line);
    let mut answer = String::new();
    let read = std::io::BufReader::new(&stream).read_line(&mut answer);
    if answer.is_empty() {
        written.map_err(io)?;
        read.map_err(io)?;
    }
    match serde_json::from_str(&answer) {
        Ok(AdminReply::Ok(reports)) => Ok(reports),
        Ok(AdminReply::Error(e)) => Err(CallError::Refused(e)),
        Err(e) => Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unreadable answer {answer:?}: {e}"),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines pinned in docs/FORMAT.md.
    #[test]
    fn wire_lines_are_pinned() {
        let cmd: KeyCommand = serde_json::from_str(
            r#"{"op":"add","name":"ada","public":"eventi-ed25519 00","quota":1048576,"rate":null}"#,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&cmd).unwrap(),
            r#"{"op":"add","name":"ada","public":"eventi-ed25519 00","quota":1048576,"rate":null}"#
        );
        let list = serde_json::to_string(&KeyCommand::List).unwrap();
        assert_eq!(list, r#"{"op":"list"}"#);
        let set = serde_json::to_string(&KeyCommand::SetQuota {
            name: "ada".into(),
            quota: 7,
        })
        .unwrap();
        assert_eq!(set, r#"{"op":"set-quota","name":"ada","quota":7}"#);
        let err = serde_json::to_string(&AdminReply::Error("no key named bob".into())).unwrap();
        assert_eq!(err, r#"{"error":"no key named bob"}"#);
        assert_eq!(
            serde_json::to_string(&AdminReply::Ok(vec![])).unwrap(),
            r#"{"ok":[]}"#
        );
    }

    #[test]
    fn root_and_self_are_operators_others_are_not() {
        assert!(is_operator(0));
        assert!(is_operator(own_uid()));
        let other = if own_uid() == 65534 { 65533 } else { 65534 };
        assert!(!is_operator(other));
    }
}
