//! Tread: answered on the connection's task when the block is in memory,
//! from the blocking pool when it must come from disk.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use eventi_shared::errors::KnownError;
use eventi_shared::version::Version;
use eventi_shared::{BlockType, Message, Score};
use eventi_store::{BlockKey, Lookup, StoreError, ANONYMOUS};

use super::session::Session;
use super::{rerror, Reply};
use crate::metrics::Kind;
use crate::state::Shared;

impl Session<'_> {
    /// Answers a Tread.
    pub(super) fn handle_read(
        &mut self,
        tag: u8,
        score: Score,
        block_type: BlockType,
        count: u32,
        started: Instant,
    ) {
        if self.writer == ANONYMOUS && !self.shared.anonymous_reads {
            let message = rerror("read needs an authorized key");
            return self.reply(tag, message, Kind::Read, started);
        }
        // A read after a write of the same block in one round must find
        // it: commit what is queued first.
        self.commit();
        let key = BlockKey { score, block_type };
        match self.shared.store.try_read(&key) {
            Ok(Lookup::WouldBlock) => self.read_in_background(tag, key, count, started),
            found => {
                let message = read_result(self.shared, self.version, key, count, found);
                self.reply(tag, message, Kind::Read, started);
            }
        }
    }

    /// A read whose bytes are not cached goes to the blocking pool, so
    /// that cold reads of one connection proceed in parallel.
    fn read_in_background(&mut self, tag: u8, key: BlockKey, count: u32, started: Instant) {
        self.in_flight += 1;
        self.shared.metrics.cold_reads.inc();
        let shared = Arc::clone(self.shared);
        let tx = self.done_tx.clone();
        let version = self.version;
        tokio::task::spawn_blocking(move || {
            let found = shared.store.read(&key).map(|r| match r {
                Some(data) => Lookup::Found(data),
                None => Lookup::Absent,
            });
            let message = read_result(&shared, version, key, count, found);
            let _ = tx.send(Reply {
                tag,
                message,
                kind: Kind::Read,
                started,
            });
        });
    }
}

fn read_result(
    shared: &Shared,
    version: Version,
    key: BlockKey,
    count: u32,
    found: Result<Lookup, StoreError>,
) -> Message {
    match found {
        Ok(Lookup::Found(data)) => read_reply(data, count, version),
        Ok(Lookup::Absent) | Ok(Lookup::WouldBlock) => rerror(format!(
            "{} with score {}/{} exists",
            KnownError::NoBlock.prefix(),
            key.score,
            key.block_type.to_wire()
        )),
        Err(e) => {
            tracing::error!(error = %e, "read failed");
            if matches!(e, StoreError::Corrupt { .. } | StoreError::BadLocation(..)) {
                shared.metrics.corrupt_reads.inc();
                return rerror(format!("{}: {e}", KnownError::Corrupt.prefix()));
            }
            rerror(e)
        }
    }
}

fn read_reply(data: Bytes, count: u32, version: Version) -> Message {
    if data.len() > count as usize {
        return rerror(format!(
            "read too small: asked for {count} need at least {}",
            data.len()
        ));
    }
    // type[1] tag[1] data must fit the 2-byte length of protocol 02.
    if version == Version::V02 && data.len() + 2 > u16::MAX as usize {
        return rerror(format!(
            "block of {} bytes is too large for protocol 02",
            data.len()
        ));
    }
    Message::Rread { data }
}
