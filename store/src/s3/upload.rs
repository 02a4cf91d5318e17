//! Sending closed packs to the bucket, in the background: up to
//! `uploads` packs at once, each pack's index written only after its
//! pack, and the indexes strictly in sequence order, so that what other
//! front-ends can read is always a whole prefix of this one's packs. A
//! failed request is retried until it succeeds (the sync that waits for
//! it is told of each failure); the pack stays in memory meanwhile, and
//! its blocks readable.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{FuturesOrdered, StreamExt};
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};

use super::names::Names;
use super::pack::PackId;

/// A closed pack and its index, waiting to be durable in the bucket.
pub struct Sealed {
    /// Which pack.
    pub id: PackId,
    /// Its bytes.
    pub data: Bytes,
    /// Its index object's bytes.
    pub index: Bytes,
}

/// What the engine and the upload task share.
pub struct Uploads {
    /// Closed packs whose index is not yet in the bucket, by sequence.
    pub unsent: RwLock<BTreeMap<u64, Arc<Sealed>>>,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Every pack below this sequence number is durable.
    durable: u64,
    /// Failed requests so far, and the last one's message.
    failures: u64,
    last_failure: String,
}

impl Uploads {
    /// Nothing sent yet.
    pub fn new() -> Arc<Uploads> {
        Arc::new(Uploads {
            unsent: RwLock::new(BTreeMap::new()),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        })
    }

    /// Waits until every pack below `seq` is durable. Fails, with the
    /// request's error, if a request fails meanwhile (the upload goes on
    /// being retried; a later wait may succeed).
    pub fn wait_durable(&self, seq: u64) -> Result<(), String> {
        let mut s = self.state.lock().expect("uploads lock");
        let failures = s.failures;
        while s.durable < seq {
            if s.failures != failures {
                return Err(s.last_failure.clone());
            }
            s = self.changed.wait(s).expect("uploads lock");
        }
        Ok(())
    }

    /// The number of the first pack not yet durable.
    pub fn durable(&self) -> u64 {
        self.state.lock().expect("uploads lock").durable
    }

    fn failed(&self, message: String) {
        tracing::warn!(error = %message, "uploading a pack failed; retrying");
        let mut s = self.state.lock().expect("uploads lock");
        s.failures += 1;
        s.last_failure = message;
        self.changed.notify_all();
    }

    fn done(&self, seq: u64) {
        self.unsent.write().expect("unsent lock").remove(&seq);
        let mut s = self.state.lock().expect("uploads lock");
        s.durable = seq + 1;
        self.changed.notify_all();
    }
}

/// The upload task: runs until `packs` closes and every pack is sent.
pub async fn run(
    client: Arc<AmazonS3>,
    names: Names,
    uploads: Arc<Uploads>,
    mut packs: tokio::sync::mpsc::UnboundedReceiver<Arc<Sealed>>,
    in_flight: usize,
) {
    let mut sending = FuturesOrdered::new();
    let mut open = true;
    loop {
        tokio::select! {
            next = packs.recv(), if open && sending.len() < in_flight.max(1) => match next {
                Some(sealed) => {
                    let (client, uploads) = (Arc::clone(&client), Arc::clone(&uploads));
                    let name = names.pack(sealed.id);
                    sending.push_back(async move {
                        // A pack of shared references alone has no bytes:
                        // its index is all there is.
                        if !sealed.data.is_empty() {
                            put_until_done(&client, &uploads, &name, sealed.data.clone()).await;
                        }
                        sealed
                    });
                }
                None => open = false,
            },
            Some(sealed) = sending.next(), if !sending.is_empty() => {
                let name = names.index(sealed.id);
                put_until_done(&client, &uploads, &name, sealed.index.clone()).await;
                uploads.done(sealed.id.seq);
            }
            else => break,
        }
    }
}

/// Writes one object, retrying (after the client's own retries) until it
/// is written.
async fn put_until_done(client: &AmazonS3, uploads: &Uploads, name: &str, bytes: Bytes) {
    let path = ObjectPath::from(name);
    let mut pause = Duration::from_millis(500);
    loop {
        match client.put(&path, PutPayload::from(bytes.clone())).await {
            Ok(_) => return,
            Err(e) => {
                uploads.failed(format!("writing {name}: {e}"));
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
    }
}
