//! The bucket, as blocking calls: the store's engine API is synchronous
//! (reads come from blocking threads, writes from the committer), so the
//! object store's async client runs on a small runtime of its own, and
//! each call waits on a channel. That works from any thread, an async
//! one included, where `block_on` would panic.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
    UpdateVersion,
};

use super::options::{Credentials, S3Options};
use crate::StoreError;

/// See the module documentation.
pub struct Bucket {
    client: Arc<AmazonS3>,
    runtime: Option<tokio::runtime::Runtime>,
    /// `endpoint/bucket`, for messages.
    label: String,
}

/// A version of an object, for a conditional write over it.
pub type Version = Option<String>;

impl Bucket {
    /// Connects (lazily: the first request fails if nothing listens) to
    /// the bucket `options` name.
    pub fn connect(options: &S3Options) -> Result<Bucket, StoreError> {
        let endpoint = options.endpoint.clone().ok_or_else(|| StoreError::Bucket {
            what: "configuring",
            object: "storage.s3".into(),
            message: "no endpoint: pass --s3-endpoint URL or set storage.s3.endpoint".into(),
        })?;
        let bucket = options.bucket.clone().ok_or_else(|| StoreError::Bucket {
            what: "configuring",
            object: "storage.s3".into(),
            message: "no bucket: pass --bucket NAME or set storage.s3.bucket".into(),
        })?;
        let mut builder = AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_bucket_name(&bucket)
            .with_region(&options.region)
            .with_virtual_hosted_style_request(options.virtual_hosted)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_client_options(
                // Options of their own replace allow_http's: set it here.
                ClientOptions::new()
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(120)),
            )
            .with_retry(RetryConfig {
                max_retries: 6,
                retry_timeout: Duration::from_secs(options.retry_secs),
                ..RetryConfig::default()
            });
        // Never the instance-metadata lookup the client falls back to
        // without credentials: that is traffic to a link-local address.
        builder = match Credentials::find(options)? {
            Some(c) => {
                let b = builder
                    .with_access_key_id(c.access_key_id)
                    .with_secret_access_key(c.secret_access_key);
                match c.session_token {
                    Some(t) => b.with_token(t),
                    None => b,
                }
            }
            None => {
                tracing::warn!(
                    "no object store credentials (file or AWS_ACCESS_KEY_ID): requests go unsigned"
                );
                builder.with_skip_signature(true)
            }
        };
        let client = builder.build().map_err(|e| StoreError::Bucket {
            what: "configuring",
            object: "storage.s3".into(),
            message: e.to_string(),
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("eventi-s3")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Bucket {
                what: "starting the client of",
                object: "storage.s3".into(),
                message: e.to_string(),
            })?;
        Ok(Bucket {
            client: Arc::new(client),
            runtime: Some(runtime),
            label: format!("{}/{bucket}", endpoint.trim_end_matches('/')),
        })
    }

    /// `endpoint/bucket`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Runs `f(client)` on the bucket's runtime and waits for it.
    fn run<T, F>(&self, f: impl FnOnce(Arc<AmazonS3>) -> F) -> T
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        run_on(self.runtime().handle(), f(Arc::clone(&self.client)))
    }

    /// The bucket's runtime, for other clients of the engine (the records
    /// database) to run on.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime().handle().clone()
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("runtime lives until drop")
    }

    /// Starts `f(client)` on the bucket's runtime without waiting.
    pub fn spawn<F>(&self, f: impl FnOnce(Arc<AmazonS3>) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.runtime().spawn(f(Arc::clone(&self.client)));
    }

    fn fail(&self, what: &'static str, name: &str, e: object_store::Error) -> StoreError {
        bucket_error(&self.label, what, name, e)
    }

    /// Writes an object, replacing any.
    pub fn put(&self, name: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = ObjectPath::from(name);
        self.run(|c| async move { c.put(&path, PutPayload::from(bytes)).await })
            .map(|_| ())
            .map_err(|e| self.fail("writing", name, e))
    }

    /// Writes an object if `expected` still describes it: `None`, that it
    /// does not exist; `Some(version)`, that it is that version. `false`
    /// if it was not (someone else wrote first).
    pub fn put_if(
        &self,
        name: &str,
        bytes: Bytes,
        expected: Option<Version>,
    ) -> Result<bool, StoreError> {
        let path = ObjectPath::from(name);
        let mode = match expected {
            None => PutMode::Create,
            Some(e_tag) => PutMode::Update(UpdateVersion {
                e_tag,
                version: None,
            }),
        };
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self.run(|c| async move { c.put_opts(&path, PutPayload::from(bytes), opts).await }) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.fail("writing", name, e)),
        }
    }

    /// An object's bytes and version, or `None` if there is none.
    pub fn get(&self, name: &str) -> Result<Option<(Bytes, Version)>, StoreError> {
        let path = ObjectPath::from(name);
        let got = self.run(|c| async move {
            let r = c.get(&path).await?;
            let version = r.meta.e_tag.clone();
            Ok::<_, object_store::Error>((r.bytes().await?, version))
        });
        match got {
            Ok(v) => Ok(Some(v)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail("reading", name, e)),
        }
    }

    /// The bytes of several objects (`None` for one that is absent), 16
    /// requests at a time.
    pub fn get_many(&self, names: &[String]) -> Result<Vec<Option<Bytes>>, StoreError> {
        let paths: Vec<(String, ObjectPath)> = names
            .iter()
            .map(|n| (n.clone(), ObjectPath::from(n.as_str())))
            .collect();
        let got = self.run(|c| async move {
            futures::stream::iter(paths)
                .map(|(name, path)| {
                    let c = Arc::clone(&c);
                    async move {
                        let r = match c.get(&path).await {
                            Ok(r) => r.bytes().await.map(Some),
                            Err(object_store::Error::NotFound { .. }) => Ok(None),
                            Err(e) => Err(e),
                        };
                        r.map_err(|e| (name, e))
                    }
                })
                .buffered(16)
                .try_collect::<Vec<_>>()
                .await
        });
        got.map_err(|(name, e)| self.fail("reading", &name, e))
    }

    /// Bytes `range` of an object (fewer if it ends first).
    pub fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        let path = ObjectPath::from(name);
        self.run(|c| async move { c.get_range(&path, range).await })
            .map_err(|e| self.fail("reading", name, e))
    }

    /// Removes an object (no error if it is absent).
    pub fn delete(&self, name: &str) -> Result<(), StoreError> {
        let path = ObjectPath::from(name);
        match self.run(|c| async move { c.delete(&path).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail("removing", name, e)),
        }
    }

    /// The names of the objects in `folder` (ending in `/`), in name
    /// order, after `after` if given.
    pub fn list(&self, folder: &str, after: Option<&str>) -> Result<Vec<String>, StoreError> {
        let prefix = ObjectPath::from(folder);
        let offset = after.map(ObjectPath::from);
        let listed = self.run(|c| async move {
            let stream = match &offset {
                Some(o) => c.list_with_offset(Some(&prefix), o),
                None => c.list(Some(&prefix)),
            };
            stream
                .map_ok(|m| m.location.to_string())
                .try_collect::<Vec<_>>()
                .await
        });
        let mut names = listed.map_err(|e| self.fail("listing", folder, e))?;
        names.sort();
        Ok(names)
    }

    /// The folders directly in `folder` (ending in `/`), each ending in `/`.
    pub fn folders(&self, folder: &str) -> Result<Vec<String>, StoreError> {
        let prefix = ObjectPath::from(folder);
        let listed = self.run(|c| async move { c.list_with_delimiter(Some(&prefix)).await });
        let listed = listed.map_err(|e| self.fail("listing", folder, e))?;
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .map(|p| format!("{p}/"))
            .collect();
        names.sort();
        Ok(names)
    }
}

/// The store error for a failed bucket request.
pub fn bucket_error(
    label: &str,
    what: &'static str,
    name: &str,
    e: object_store::Error,
) -> StoreError {
    StoreError::Bucket {
        what,
        object: format!("{label}/{name}"),
        message: chain(&e),
    }
}

/// An error and its sources, `: `-separated (the client's own message
/// often says only "HTTP error").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        next = s.source();
    }
    text
}

/// Runs `fut` on `runtime` and waits for it, from any thread.
pub fn run_on<T, F>(runtime: &tokio::runtime::Handle, fut: F) -> T
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .expect("a task on the s3 runtime ends by sending its result")
}

impl Drop for Bucket {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics on an async thread.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
