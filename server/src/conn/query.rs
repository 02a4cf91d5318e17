//! eventi's query extensions: Thas (which of these blocks are stored,
//! without reading them: `eventi check`) and Tkeyinfo (the session's key,
//! its quota and usage: `eventi server list`). plan9port's tools never
//! send them; bytes in `docs/PROTOCOL.md`.

use std::sync::Arc;
use std::time::Instant;

use eventi_shared::{BlockType, Message, Score};
use eventi_store::{BlockKey, QuotaPolicy, WriteLimit, ANONYMOUS};

use super::session::Session;
use super::{rerror, Reply};
use crate::metrics::Kind;

impl Session<'_> {
    /// Answers a Thas from the blocking pool: index lookups may go to disk.
    pub(super) fn handle_has(&mut self, tag: u8, keys: Vec<(Score, BlockType)>, started: Instant) {
        // Presence says as much as a read does.
        if self.writer == ANONYMOUS && !self.shared.anonymous_reads {
            let message = rerror("read needs an authorized key");
            return self.reply(tag, message, Kind::Query, started);
        }
        // Blocks written earlier in this round must be found.
        self.commit();
        self.in_flight += 1;
        let shared = Arc::clone(self.shared);
        let tx = self.done_tx.clone();
        tokio::task::spawn_blocking(move || {
            let present: Result<Vec<bool>, _> = keys
                .into_iter()
                .map(|(score, block_type)| shared.store.contains(&BlockKey { score, block_type }))
                .collect();
            let message = match present {
                Ok(present) => Message::Rhas { present },
                Err(e) => {
                    tracing::error!(error = %e, "presence query failed");
                    rerror(e)
                }
            };
            let _ = tx.send(Reply {
                tag,
                message,
                kind: Kind::Query,
                started,
            });
        });
    }

    /// Answers a Tkeyinfo: the session's key name, quota and usage.
    pub(super) fn handle_keyinfo(&mut self, tag: u8, started: Instant) {
        let keys = &self.shared.keys;
        let quota = match keys.limit(self.writer) {
            WriteLimit::Bytes(q) => q,
            WriteLimit::Refused(_) => 0,
            WriteLimit::Unlimited => u64::MAX,
        };
        let usage = keys.usage(self.writer);
        let message = Message::Rkeyinfo {
            name: self.writer_label.to_string(),
            quota,
            used: usage.bytes,
            blocks: usage.blocks,
        };
        self.reply(tag, message, Kind::Query, started)
    }
}
