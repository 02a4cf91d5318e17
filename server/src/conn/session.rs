//! One session's state after hello, and the dispatch of each request to
//! its handler (`auth.rs`, `read.rs`, `write.rs`, `query.rs`, `heads.rs`). A new request kind is
//! one codec variant, one handler, and one arm here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventi_shared::version::Version;
use eventi_shared::{auth, Message};
use eventi_store::{Job, ANONYMOUS};
use tokio::sync::mpsc;

use super::{rerror, Reply};
use crate::metrics::Kind;
use crate::out_queue::OutQueue;
use crate::state::Shared;

/// The state of one session after hello.
pub(super) struct Session<'a> {
    pub(super) shared: &'a Arc<Shared>,
    pub(super) version: Version,
    pub(super) max_block: usize,
    pub(super) out: OutQueue,
    /// Requests whose replies will arrive on `done_tx`'s channel.
    pub(super) in_flight: usize,
    pub(super) done_tx: mpsc::UnboundedSender<Reply>,
    /// Writes and syncs decoded this round, for one group commit.
    pub(super) jobs: Vec<Job>,
    /// The write key this session authenticated as (`ANONYMOUS` until then).
    pub(super) writer: u32,
    /// The challenge sent in Rhello, and the uid from Thello: what a
    /// Tauth0 signature must cover.
    pub(super) challenge: [u8; auth::CHALLENGE_LEN],
    pub(super) uid: String,
    /// The encrypted session's handshake hash, which a Tauth0 signature
    /// must bind; `None` in plain venti.
    pub(super) binding: Option<[u8; auth::BINDING_LEN]>,
    /// How long to pause before reading more, for a key over its rate.
    pub(super) throttle: Duration,
    /// The writer's name in metrics ("anonymous" until authenticated),
    /// and its stored-bytes counter, resolved once per session.
    pub(super) writer_label: Arc<str>,
    /// The authenticated write key's public bytes (heads are kept by it).
    pub(super) writer_key: Option<[u8; 32]>,
    pub(super) stored_counter: prometheus_client::metrics::counter::Counter,
}

impl<'a> Session<'a> {
    /// A session that has said hello as `uid` on protocol `version`.
    pub(super) fn new(
        shared: &'a Arc<Shared>,
        version: Version,
        max_block: usize,
        challenge: [u8; auth::CHALLENGE_LEN],
        uid: String,
        binding: Option<[u8; auth::BINDING_LEN]>,
        done_tx: mpsc::UnboundedSender<Reply>,
    ) -> Session<'a> {
        Session {
            shared,
            version,
            max_block,
            out: OutQueue::default(),
            in_flight: 0,
            done_tx,
            jobs: Vec::new(),
            writer: ANONYMOUS,
            challenge,
            uid,
            binding,
            throttle: Duration::ZERO,
            writer_label: Arc::from("anonymous"),
            writer_key: None,
            stored_counter: shared.metrics.key_stored_counter("anonymous"),
        }
    }

    /// Starts one request: answered now, queued for the commit, or sent
    /// to the blocking pool.
    pub(super) fn start(&mut self, tag: u8, message: Message, started: Instant) {
        if let Some((why, kind)) = self.needs_encryption(&message) {
            return self.reply(tag, rerror(why), kind, started);
        }
        match message {
            Message::Tping => self.reply(tag, Message::Rping, Kind::Ping, started),
            Message::Thello { .. } => {
                let message = rerror("hello already done on this connection");
                self.reply(tag, message, Kind::Hello, started)
            }
            Message::Tauth0 { key, signature } => self.handle_auth(tag, &key, &signature, started),
            Message::Tread {
                score,
                block_type,
                count,
            } => self.handle_read(tag, score, block_type, count, started),
            Message::Twrite { block_type, data } => {
                self.handle_write(tag, block_type, data, started)
            }
            Message::Tsync => self.handle_sync(tag, started),
            Message::Thas { keys } => self.handle_has(tag, keys, started),
            Message::Tkeyinfo => self.handle_keyinfo(tag, started),
            Message::Theadget { key, name } => self.handle_head_get(tag, key, &name, started),
            Message::Theadset { name, head, epoch } => {
                self.handle_head_set(tag, &name, head, epoch, started)
            }
            Message::Tprune { request } => self.handle_prune(tag, request, started),
            other => {
                let why = format!("unknown request {}", other.name());
                self.reply(tag, rerror(why), Kind::Other, started)
            }
        }
    }

    /// Why a plain session may not make this request under the
    /// operator's `require_encryption`, if it may not.
    fn needs_encryption(&self, message: &Message) -> Option<(&'static str, Kind)> {
        if self.binding.is_some() {
            return None;
        }
        let require = self.shared.require_encryption;
        match message {
            Message::Tauth0 { .. } if require.keyed_writes() => Some((
                "this server takes write keys only in an encrypted session: pin its identity (eventi server add --server-key, from eventi-server identity)",
                Kind::Auth,
            )),
            Message::Twrite { .. } if require.writes() => Some((
                "this server takes writes only in an encrypted session (plain venti tools cannot write here)",
                Kind::Write,
            )),
            Message::Tread { .. } | Message::Thas { .. } | Message::Theadget { .. }
                if require.reads() =>
            {
                Some((
                    "this server serves reads only in an encrypted session (plain venti tools cannot read here)",
                    Kind::Read,
                ))
            }
            _ => None,
        }
    }

    /// Encodes a reply now and counts it.
    pub(super) fn reply(&mut self, tag: u8, message: Message, kind: Kind, started: Instant) {
        let m = self.shared.metrics.kind(kind);
        m.requests.inc();
        if matches!(message, Message::Rerror { .. }) {
            m.errors.inc();
        }
        m.latency.observe(started.elapsed().as_secs_f64());
        if let Err(e) = self.out.push(self.version, tag, &message) {
            let _ = self.out.push(self.version, tag, &rerror(e));
        }
    }

    /// Sends a reply finished away from the connection's task.
    pub(super) fn finish(&mut self, r: Reply) {
        self.in_flight -= 1;
        self.reply(r.tag, r.message, r.kind, r.started);
    }

    /// Hands this round's writes and syncs to the group commit.
    pub(super) fn commit(&mut self) {
        if !self.jobs.is_empty() {
            self.in_flight += self.jobs.len();
            self.shared.store.submit(std::mem::take(&mut self.jobs));
        }
    }
}
