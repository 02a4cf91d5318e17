//! The `[storage.s3]` settings, and where the credentials come from: a
//! file, or the usual environment variables; never the command line,
//! where any user of the machine could read them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// The `[storage.s3]` table.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Options {
    /// The object store's URL (`http://127.0.0.1:8333`, `https://s3.example.net`).
    pub endpoint: Option<String>,
    /// The bucket, which must exist.
    pub bucket: Option<String>,
    /// Object names start with this (several stores in one bucket).
    pub prefix: String,
    /// The region to sign for (most self-hosted stores accept any).
    pub region: String,
    /// `bucket.host` URLs instead of `host/bucket`.
    pub virtual_hosted: bool,
    /// A TOML file with `access_key_id`, `secret_access_key` and, if
    /// needed, `session_token`; without it, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
    pub credentials_file: Option<PathBuf>,
    /// A PostgreSQL database (libpq's `host=… dbname=… user=…` or a
    /// `postgresql://` URL, no password: that comes from `PGPASSWORD`)
    /// to keep write keys and heads in, for object stores that ignore
    /// conditional writes (Garage). Every front-end of a store must name
    /// the same one.
    pub records_database: Option<String>,
    /// Milliseconds between looks for packs other front-ends wrote.
    pub poll_millis: u64,
    /// Bytes at which a pack is closed and uploaded.
    pub pack_bytes: u64,
    /// Bytes read from a pack at once (a restore reads on through them).
    pub read_bytes: u64,
    /// Bytes of packs kept in memory for reading.
    pub cache_bytes: u64,
    /// Packs uploaded at once.
    pub uploads: usize,
    /// Seconds a request is retried before it fails.
    pub retry_secs: u64,
    /// Seconds a front-end that has not written its heartbeat is taken
    /// for gone by a repack (and after half of which it answers no sync
    /// before it has looked for repack plans again).
    pub lease_secs: u64,
    /// Seconds after which a front-end with no heartbeat is gone for
    /// good: a repack closes its folder (the others stop listing it) and
    /// removes its packs that have no index. One that was only stalled
    /// then refuses every sync until restarted.
    pub gone_secs: u64,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            endpoint: None,
            bucket: None,
            prefix: String::new(),
            region: "us-east-1".into(),
            virtual_hosted: false,
            credentials_file: None,
            records_database: None,
            poll_millis: 1000,
            pack_bytes: 16 << 20,
            read_bytes: 1 << 20,
            cache_bytes: 256 << 20,
            uploads: 4,
            retry_secs: 30,
            lease_secs: 60,
            gone_secs: 3600,
        }
    }
}

/// The file in a data directory that remembers its object store, so
/// that the offline commands (`keys`, `verify`) find it.
const REMEMBERED: &str = "s3.toml";

impl S3Options {
    /// The settings to open the store in `dir` with: `given` if it names
    /// an endpoint (remembered in the directory for next time), else the
    /// remembered ones.
    pub fn resolve(dir: &Path, given: &S3Options) -> Result<S3Options, StoreError> {
        let file = dir.join(REMEMBERED);
        if given.endpoint.is_some() {
            let text = toml::to_string(given).expect("s3 options serialize");
            if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
                crate::private::write_file(&file, text.as_bytes())
                    .map_err(|e| StoreError::io("writing", &file, e))?;
            }
            return Ok(given.clone());
        }
        match std::fs::read_to_string(&file) {
            Ok(text) => toml::from_str(&text).map_err(|e| StoreError::BadDataDir {
                path: file.clone(),
                reason: format!("not s3 settings: {}", e.message()),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(given.clone()),
            Err(e) => Err(StoreError::io("reading", &file, e)),
        }
    }
}

/// An access key for the object store.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The key's id.
    pub access_key_id: String,
    /// Its secret.
    pub secret_access_key: String,
    /// A temporary session's token.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The credentials file's, else the environment's, else none.
    pub fn find(options: &S3Options) -> Result<Option<Credentials>, StoreError> {
        if let Some(path) = &options.credentials_file {
            let text =
                std::fs::read_to_string(path).map_err(|e| StoreError::io("reading", path, e))?;
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(file = %path.display(), "the object store credentials file is open to other users (chmod 600 it)");
                }
            }
            return toml::from_str(&text)
                .map(Some)
                .map_err(|e| StoreError::Bucket {
                    what: "reading the credentials file",
                    object: path.display().to_string(),
                    message: format!(
                        "{} (it takes access_key_id, secret_access_key and session_token)",
                        e.message()
                    ),
                });
        }
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        Ok(
            match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                (Some(access_key_id), Some(secret_access_key)) => Some(Credentials {
                    access_key_id,
                    secret_access_key,
                    session_token: var("AWS_SESSION_TOKEN"),
                }),
                _ => None,
            },
        )
    }
}
