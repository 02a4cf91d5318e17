//! Tprune: a prune of the session's own write key, in steps (eventi
//! extension; bytes in `docs/PROTOCOL.md`, "Prune"). Only an authorized
//! key prunes, and only its own references: a block another key (or an
//! anonymous writer, or the legacy holder) holds is never let go by it.
//! A commit is refused unless the key's heads are those its marking
//! walked from, and raises the key's epoch under the heads lock, so that
//! a backup of the same key either was marked or has its head refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventi_shared::codec::prune::{PruneReply, PruneRequest, PruneStatus};
use eventi_shared::head::SignedHead;
use eventi_shared::Message;
use eventi_store::{BlockKey, Store, StoreError, Table, ANONYMOUS};

use super::session::Session;
use super::{rerror, Reply};
use crate::metrics::Kind;
use crate::state::Shared;

impl Session<'_> {
    /// Answers a Tprune from the blocking pool.
    pub(super) fn handle_prune(&mut self, tag: u8, request: PruneRequest, started: Instant) {
        let (Some(key), writer) = (self.writer_key, self.writer) else {
            let message = rerror("prune needs an authorized key");
            return self.reply(tag, message, Kind::Query, started);
        };
        if writer == ANONYMOUS {
            let message = rerror("prune needs an authorized key");
            return self.reply(tag, message, Kind::Query, started);
        }
        // Marks must see this session's earlier writes.
        self.commit();
        self.in_flight += 1;
        let shared = Arc::clone(self.shared);
        let tx = self.done_tx.clone();
        let label = self.writer_label.to_string();
        tokio::task::spawn_blocking(move || {
            let message = match step(&shared, writer, &key, &label, request) {
                Ok(reply) => Message::Rprune { reply },
                Err(e) => rerror(e),
            };
            let _ = tx.send(Reply {
                tag,
                message,
                kind: Kind::Query,
                started,
            });
        });
    }
}

fn status(
    shared: &Shared,
    key: &[u8; 32],
    op: u8,
    s: eventi_store::prune::PruneState,
) -> Result<PruneReply, String> {
    Ok(PruneReply::Status {
        op,
        status: PruneStatus {
            epoch: s.epoch,
            since: s.since,
            reclaimed_bytes: s.reclaimed_bytes,
            grace: shared.prune.grace_secs,
            heads: heads_of(&shared.store, key)?,
        },
    })
}

fn step(
    shared: &Shared,
    writer: u32,
    key: &[u8; 32],
    label: &str,
    request: PruneRequest,
) -> Result<PruneReply, String> {
    let store = &shared.store;
    let failed = |e: StoreError| e.to_string();
    match request {
        PruneRequest::Status => status(shared, key, 0, store.prune_state(writer).map_err(failed)?),
        PruneRequest::Begin => {
            // Heads read after the marking starts: a head set later moves
            // one, and the commit is refused.
            let s = store.prune_begin(writer).map_err(failed)?;
            tracing::info!(key = %label, epoch = s.epoch, "prune: marking begins");
            status(shared, key, 1, s)
        }
        PruneRequest::Mark { keys } => {
            let keys: Vec<BlockKey> = keys
                .into_iter()
                .map(|(score, block_type)| BlockKey { score, block_type })
                .collect();
            let present = store.hold(writer, &keys).map_err(failed)?;
            Ok(PruneReply::Marked { present })
        }
        PruneRequest::Commit { heads } => {
            let opened = {
                let _heads = shared.heads_lock.lock().expect("heads lock");
                store
                    .prune_open_commit(writer, &mut || same_heads(store, key, &heads))
                    .map_err(failed)?
            };
            let grace = Duration::from_secs(shared.prune.grace_secs);
            let o = store.prune_finish(writer, opened, grace).map_err(failed)?;
            tracing::info!(
                key = %label, epoch = o.epoch, released = o.released,
                dead_blocks = o.dead_blocks, dead_bytes = o.dead_bytes,
                moved_blocks = o.moved_blocks, "prune committed"
            );
            shared.compactor.wake();
            Ok(PruneReply::Committed(o))
        }
    }
}

/// The key's heads, (name, sequence), in name order.
fn heads_of(store: &Store, key: &[u8; 32]) -> Result<Vec<(String, u64)>, String> {
    let mut heads: Vec<(String, u64)> = store
        .scan_records(Table::Heads)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|(id, v)| {
            let name = id.strip_prefix(key.as_slice())?;
            let head = SignedHead::from_bytes(&v)?;
            Some((String::from_utf8_lossy(name).into_owned(), head.seq))
        })
        .collect();
    heads.sort();
    Ok(heads)
}

/// Whether the key's heads are exactly `expected` (name, sequence): a
/// head set since the marking began names a snapshot it did not walk.
fn same_heads(store: &Store, key: &[u8; 32], expected: &[(String, u64)]) -> Result<(), String> {
    let now = heads_of(store, key)?;
    let mut expected = expected.to_vec();
    expected.sort();
    if now != expected {
        return Err(
            "the key's heads moved since the marking began (a backup finished meanwhile): mark again"
                .into(),
        );
    }
    Ok(())
}

/// The refusal of a head set made in an older prune epoch.
pub(super) fn check_epoch(store: &Store, writer: u32, epoch: Option<u64>) -> Result<(), String> {
    let Some(epoch) = epoch else {
        return Ok(());
    };
    let now = store.prune_state(writer).map_err(|e| e.to_string())?.epoch;
    if now != epoch {
        return Err(format!(
            "{}: a prune of this key committed during the backup (epoch {epoch}, now {now}); \
             its blocks must be marked again before its head is set",
            eventi_shared::errors::KnownError::Pruned.prefix()
        ));
    }
    Ok(())
}
