//! A venti server as the store: eventi-server (in an encrypted session
//! to its pinned identity, authenticating with the write key when the
//! server offers a challenge) or any plain venti server such as
//! plan9port's (anonymous, in clear).
//!
//! The connection is pipelined (`VentiClient`); this adapter owns a small
//! tokio runtime so that worker threads can put without waiting for
//! replies and get by blocking.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use eventi_shared::client::{ClientOptions, ServerKey};
use eventi_shared::errors::KnownError;
use eventi_shared::{BlockType, ClientError, Score, VentiClient, MAX_BLOCK_V02};

use super::{BlockStore, InFlight, PutDone, StoreError};

/// Writes in flight on the connection.
const MAX_IN_FLIGHT: usize = 256;

/// See the module documentation.
pub struct VentiStore {
    client: VentiClient,
    name: String,
    runtime: tokio::runtime::Runtime,
    in_flight: Arc<InFlight>,
    authenticated: bool,
    /// When each write in flight was sent, by a running number: the
    /// oldest one's age says whether this server is falling behind.
    sent_at: Arc<Mutex<BTreeMap<u64, Instant>>>,
    next_write: AtomicU64,
    /// The key's prune epoch as a backup found it when it began
    /// ([`BlockStore::prune_epoch`]), sent with its head sets; `None` (no
    /// check) for a command that asked none.
    epoch: Mutex<Option<u64>>,
}

impl VentiStore {
    /// Connects to `addr`. With a write key, authenticates if the server
    /// offers write-key authentication and stays anonymous on a plain
    /// venti server.
    pub fn connect(
        addr: &str,
        write_key: Option<ed25519_dalek::SigningKey>,
        server_key: ServerKey,
        timeout: std::time::Duration,
    ) -> Result<VentiStore, StoreError> {
        let failed = |e: &dyn std::fmt::Display| StoreError::Failed {
            store: addr.to_string(),
            message: e.to_string(),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("eventi-venti")
            .enable_all()
            .build()
            .map_err(|e| failed(&e))?;
        let options = ClientOptions {
            write_key,
            timeout,
            server_key,
            ..ClientOptions::default()
        };
        let anonymous = ClientOptions {
            write_key: None,
            ..options.clone()
        };
        let wants_auth = options.write_key.is_some();
        let client = runtime.block_on(async {
            match VentiClient::connect_with(addr, options).await {
                Err(ClientError::NoAuth) => VentiClient::connect_with(addr, anonymous)
                    .await
                    .map(|c| (c, false)),
                other => other.map(|c| (c, wants_auth)),
            }
        });
        let (client, authenticated) = client.map_err(|e| failed(&e))?;
        Ok(VentiStore {
            client,
            name: addr.to_string(),
            runtime,
            in_flight: Arc::new(InFlight::new(MAX_IN_FLIGHT)),
            authenticated,
            sent_at: Arc::default(),
            next_write: AtomicU64::new(0),
            epoch: Mutex::new(None),
        })
    }

    /// The connection, for the extension requests of `heads`.
    pub(crate) fn client(&self) -> &VentiClient {
        &self.client
    }

    /// Runs `f` on this store's runtime.
    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Whether the session authenticated with the write key (the server
    /// offers write keys and has this one).
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// The session's key as the server sees it, with its quota and usage;
    /// `None` from a server without eventi's extensions.
    pub fn keyinfo(&self) -> Result<Option<eventi_shared::client::KeyInfo>, StoreError> {
        match self.runtime.block_on(self.client.keyinfo()) {
            Ok(info) => Ok(Some(info)),
            Err(ClientError::Unsupported) => Ok(None),
            Err(e) => Err(self.failed(e)),
        }
    }

    /// The identity the server proved, for an encrypted session.
    pub fn server_key(&self) -> Option<[u8; 32]> {
        self.client.encrypted().map(|e| e.server_key)
    }

    /// The round trip of one ping. An error reply is an answer too:
    /// plan9port's venti server knows only read, write and sync, and
    /// answers Tping with Rerror "unknown request".
    pub fn ping(&self) -> Result<std::time::Duration, StoreError> {
        let started = std::time::Instant::now();
        match self.runtime.block_on(self.client.ping()) {
            Ok(()) | Err(ClientError::Server(_)) => Ok(started.elapsed()),
            Err(e) => Err(self.failed(e)),
        }
    }

    /// The prune epoch head sets are checked against.
    pub fn epoch(&self) -> Option<u64> {
        *self.epoch.lock().expect("epoch lock")
    }

    /// Moves the epoch head sets are checked against (after the
    /// snapshot's blocks were marked again in the new one).
    pub fn set_epoch(&self, epoch: u64) {
        *self.epoch.lock().expect("epoch lock") = Some(epoch);
    }

    fn failed(&self, e: ClientError) -> StoreError {
        StoreError::Failed {
            store: self.name.clone(),
            message: e.to_string(),
        }
    }
}

impl VentiStore {
    /// Sends a write that holds `ticket`; `done` hears its outcome, or
    /// [`StoreError::TooSlow`] if it took longer than `lag`.
    fn send(
        &self,
        ticket: super::Ticket,
        block_type: BlockType,
        data: Bytes,
        done: PutDone,
        lag: Option<std::time::Duration>,
    ) {
        let client = self.client.clone();
        let in_flight = Arc::clone(&self.in_flight);
        let name = self.name.clone();
        let started = Instant::now();
        // Only writes that may leave the server behind are timed.
        let tracked = lag.map(|_| {
            let id = self.next_write.fetch_add(1, Relaxed);
            self.sent_at.lock().expect("sent_at").insert(id, started);
            (id, Arc::clone(&self.sent_at))
        });
        self.runtime.spawn(async move {
            let r = client.write(block_type, data).await;
            if let Some((id, sent_at)) = tracked {
                sent_at.lock().expect("sent_at").remove(&id);
            }
            let took = started.elapsed();
            let outcome = match r {
                Ok(_) if lag.is_some_and(|lag| took > lag) => Err(StoreError::TooSlow {
                    store: name,
                    seconds: took.as_secs_f64(),
                }),
                Ok(score) => Ok(score),
                Err(e) => Err(StoreError::Failed {
                    store: name,
                    message: e.to_string(),
                }),
            };
            done(outcome);
            in_flight.release(ticket);
        });
    }
}

impl BlockStore for VentiStore {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn put(&self, block_type: BlockType, data: Bytes, done: PutDone) {
        if data.is_empty() {
            return done(Ok(Score::ZERO));
        }
        let ticket = self.in_flight.acquire();
        self.send(ticket, block_type, data, done, None);
    }

    fn put_within(
        &self,
        _score: Score,
        block_type: BlockType,
        data: Bytes,
        done: PutDone,
        lag: std::time::Duration,
    ) -> Option<PutDone> {
        if data.is_empty() {
            done(Ok(Score::ZERO));
            return None;
        }
        // A write unanswered for longer than the lag: this server is
        // behind, whatever room its queue has.
        let oldest = self
            .sent_at
            .lock()
            .expect("sent_at")
            .values()
            .next()
            .copied();
        if oldest.is_some_and(|t| t.elapsed() > lag) {
            return Some(done);
        }
        match self.in_flight.acquire_within(lag) {
            Some(ticket) => {
                self.send(ticket, block_type, data, done, Some(lag));
                None
            }
            None => Some(done),
        }
    }

    fn get(&self, score: Score, block_type: BlockType) -> Result<Bytes, StoreError> {
        if score.is_zero() {
            return Ok(Bytes::new());
        }
        let r = self
            .runtime
            .block_on(self.client.read(score, block_type, MAX_BLOCK_V02 as u32));
        match r {
            Ok(data) => Ok(data),
            Err(ClientError::Server(m)) => match KnownError::classify(&m) {
                Some(KnownError::NoBlock) => Err(StoreError::Missing {
                    score,
                    block_type,
                    store: self.name.clone(),
                }),
                Some(KnownError::Corrupt) => Err(StoreError::Damaged {
                    score,
                    store: self.name.clone(),
                }),
                _ => Err(self.failed(ClientError::Server(m))),
            },
            // A server that sends other bytes than asked for: its copy is
            // bad, or it lies; either way another server may do better.
            Err(ClientError::HashMismatch { .. }) => Err(StoreError::Damaged {
                score,
                store: self.name.clone(),
            }),
            Err(e) => Err(self.failed(e)),
        }
    }

    fn has(&self, keys: &[(Score, BlockType)]) -> Result<Option<Vec<bool>>, StoreError> {
        match self.runtime.block_on(self.client.has(keys)) {
            Ok(present) => Ok(Some(present)),
            Err(ClientError::Unsupported) => Ok(None),
            Err(e) => Err(self.failed(e)),
        }
    }

    fn sync(&self) -> Result<(), StoreError> {
        // Venti orders a sync only after the writes it has answered; puts
        // that begin meanwhile are left to the next sync.
        self.in_flight.wait_for_earlier();
        self.runtime
            .block_on(self.client.sync())
            .map_err(|e| self.failed(e))
    }

    fn prunable(&self) -> Option<&dyn super::prune::Prunable> {
        Some(self)
    }

    fn prune_epoch(&self) -> Option<u64> {
        if !self.authenticated {
            return None;
        }
        match self.runtime.block_on(self.client.prune_status()) {
            Ok(s) => {
                self.set_epoch(s.epoch);
                Some(s.epoch)
            }
            Err(_) => self.epoch(),
        }
    }
}

impl super::prune::Prunable for VentiStore {
    fn prune_status(&self) -> Result<Option<eventi_shared::codec::prune::PruneStatus>, StoreError> {
        if !self.authenticated {
            return Ok(None);
        }
        match self.runtime.block_on(self.client.prune_status()) {
            Ok(s) => Ok(Some(s)),
            Err(ClientError::Unsupported) => Ok(None),
            Err(e) => Err(self.failed(e)),
        }
    }

    fn prune_begin(&self) -> Result<eventi_shared::codec::prune::PruneStatus, StoreError> {
        self.runtime
            .block_on(self.client.prune_begin())
            .map_err(|e| self.failed(e))
    }

    fn prune_mark(&self, keys: &[(Score, BlockType)]) -> Result<Vec<bool>, StoreError> {
        self.runtime
            .block_on(self.client.prune_mark(keys))
            .map_err(|e| self.failed(e))
    }

    fn prune_commit(
        &self,
        heads: Vec<(String, u64)>,
    ) -> Result<eventi_shared::codec::prune::PruneCommitted, StoreError> {
        let done = self
            .runtime
            .block_on(self.client.prune_commit(heads))
            .map_err(|e| self.failed(e))?;
        self.set_epoch(done.epoch);
        Ok(done)
    }

    fn adopt_epoch(&self, epoch: u64) {
        self.set_epoch(epoch);
    }

    fn head(
        &self,
        key: [u8; 32],
        name: &str,
    ) -> Result<Option<eventi_shared::head::SignedHead>, StoreError> {
        match self.runtime.block_on(self.client.head_get(key, name)) {
            Ok(h) => Ok(h),
            Err(ClientError::Unsupported) => Ok(None),
            Err(e) => Err(self.failed(e)),
        }
    }
}
