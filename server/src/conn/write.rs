//! Twrite and Tsync: checked on the connection's task, then queued to the
//! store's group commit, whose callback sends the reply back.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use eventi_shared::{BlockType, Message, Score};
use eventi_store::{BlockKey, Job, NewBlock, QuotaPolicy, StoreError, WriteLimit, ANONYMOUS};

use super::session::Session;
use super::{rerror, Reply};
use crate::metrics::{Kind, Metrics};

impl Session<'_> {
    /// Checks a Twrite and queues it for this round's commit.
    pub(super) fn handle_write(
        &mut self,
        tag: u8,
        block_type: BlockType,
        data: Bytes,
        started: Instant,
    ) {
        if data.len() > self.max_block {
            let why = format!(
                "block too large: {} bytes, limit {} on protocol {}",
                data.len(),
                self.max_block,
                self.version.as_str()
            );
            return self.reply(tag, rerror(why), Kind::Write, started);
        }
        if let WriteLimit::Refused(why) = self.shared.keys.limit(self.writer) {
            // Refused before any work is spent on the block. (The commit
            // checks again: a key may be removed meanwhile.)
            let reason = if self.writer == ANONYMOUS {
                "no key"
            } else {
                "not authorized"
            };
            self.shared
                .metrics
                .refused_write(&self.writer_label, reason);
            return self.reply(tag, rerror(why), Kind::Write, started);
        }
        self.throttle += self.shared.keys.throttle(self.writer, data.len() as u64);
        let score = Score::of(&data);
        if data.is_empty() {
            return self.reply(tag, Message::Rwrite { score }, Kind::Write, started);
        }
        let block = NewBlock {
            key: BlockKey { score, block_type },
            data,
            writer: self.writer,
        };
        let tx = self.done_tx.clone();
        let metrics = Arc::clone(&self.shared.metrics);
        let who = Arc::clone(&self.writer_label);
        let stored = self.stored_counter.clone();
        let len = block.data.len() as u64;
        let done = Box::new(move |r: Result<bool, StoreError>| {
            let message = match r {
                Ok(new) => {
                    if new {
                        metrics.writes_new.inc();
                        stored.inc_by(len);
                    } else {
                        metrics.writes_duplicate.inc();
                    }
                    Message::Rwrite { score }
                }
                Err(e) => {
                    count_refusal(&metrics, &who, &e);
                    rerror(write_error_text(&e))
                }
            };
            let _ = tx.send(Reply {
                tag,
                message,
                kind: Kind::Write,
                started,
            });
        });
        self.jobs.push(Job::Write(block, done));
    }

    /// Queues a Tsync: answered once every earlier write is durable.
    pub(super) fn handle_sync(&mut self, tag: u8, started: Instant) {
        let tx = self.done_tx.clone();
        let done = Box::new(move |r: Result<(), StoreError>| {
            let message = match r {
                Ok(()) => Message::Rsync,
                Err(e) => rerror(e),
            };
            let _ = tx.send(Reply {
                tag,
                message,
                kind: Kind::Sync,
                started,
            });
        });
        self.jobs.push(Job::Sync(done));
    }
}

/// Counts a write the store refused, by why, under the writer's name.
fn count_refusal(metrics: &Metrics, who: &str, e: &StoreError) {
    let reason = match e {
        StoreError::QuotaExceeded => "quota",
        StoreError::WriteRefused(_) => "not authorized",
        StoreError::DiskFull { .. } => "disk full",
        StoreError::ReadOnly(_) => "read-only",
        _ => return,
    };
    metrics.refused_write(who, reason);
}

/// The Rerror text for a failed write: the store's own words, except that
/// a full disk is the server's, in the words clients recognise
/// ([`eventi_shared::errors::KnownError::DiskFull`]).
fn write_error_text(e: &StoreError) -> String {
    match e {
        // "server " + "disk full: ..." begins with the known prefix.
        StoreError::DiskFull { .. } => format!("server {e}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventi_shared::errors::KnownError;

    #[test]
    fn a_full_disk_is_reported_in_the_words_clients_recognise() {
        let text = write_error_text(&StoreError::DiskFull {
            free: 3 << 20,
            reserve: 8 << 20,
        });
        assert_eq!(
            text,
            "server disk full: 3.00 MiB free, 8.00 MiB kept in reserve"
        );
        assert_eq!(KnownError::classify(&text), Some(KnownError::DiskFull));
    }
}
