//! Bytes and blocks stored per writer (write key number; 0 = anonymous),
//! kept by the engines in the same RocksDB batch as the blocks they
//! describe, so a crash never leaves usage that disagrees with what is
//! stored.

use std::collections::HashMap;
use std::sync::Mutex;

use rocksdb::{WriteBatch, DB};

use crate::keyspace::Table;
use crate::StoreError;

/// What one writer has stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of the blocks it stored first.
    pub bytes: u64,
    /// Blocks it stored first.
    pub blocks: u64,
    /// Unix seconds of its last new block (0 if none).
    pub last_write: u64,
}

fn key(writer: u32) -> Vec<u8> {
    Table::Usage.key(&writer.to_be_bytes())
}

impl Usage {
    fn encode(&self) -> [u8; 24] {
        let mut v = [0u8; 24];
        v[0..8].copy_from_slice(&self.bytes.to_be_bytes());
        v[8..16].copy_from_slice(&self.blocks.to_be_bytes());
        v[16..24].copy_from_slice(&self.last_write.to_be_bytes());
        v
    }

    fn decode(v: &[u8]) -> Option<Usage> {
        let at = |i: usize| -> Option<u64> {
            Some(u64::from_be_bytes(v.get(i..i + 8)?.try_into().ok()?))
        };
        Some(Usage {
            bytes: at(0)?,
            blocks: at(8)?,
            last_write: at(16)?,
        })
    }
}

/// The in-memory mirror of every writer's usage.
#[derive(Default)]
pub struct UsageBook {
    by_writer: Mutex<HashMap<u32, Usage>>,
}

impl UsageBook {
    /// Loads every writer's usage from `db`.
    pub fn load(db: &DB) -> Result<UsageBook, StoreError> {
        let mut map = HashMap::new();
        for (id, v) in crate::rocks::scan(db, Table::Usage)? {
            let writer = id.as_slice().try_into().ok().map(u32::from_be_bytes);
            if let (Some(w), Some(u)) = (writer, Usage::decode(&v)) {
                map.insert(w, u);
            }
        }
        Ok(UsageBook {
            by_writer: Mutex::new(map),
        })
    }

    /// One writer's usage.
    pub fn get(&self, writer: u32) -> Usage {
        self.by_writer
            .lock()
            .expect("usage lock")
            .get(&writer)
            .copied()
            .unwrap_or_default()
    }

    /// Every writer's usage.
    pub fn all(&self) -> Vec<(u32, Usage)> {
        let mut v: Vec<_> = self
            .by_writer
            .lock()
            .expect("usage lock")
            .iter()
            .map(|(w, u)| (*w, *u))
            .collect();
        v.sort_by_key(|(w, _)| *w);
        v
    }

    /// Adds new blocks, as (writer, length), to their writers' usage: the new values go
    /// into `batch`, and become visible here only through [`UsageBook::commit`]
    /// once the batch is written.
    pub fn charge(
        &self,
        blocks: impl IntoIterator<Item = (u32, u64)>,
        batch: &mut WriteBatch,
    ) -> HashMap<u32, Usage> {
        let now = unix_now();
        let map = self.by_writer.lock().expect("usage lock");
        let mut next: HashMap<u32, Usage> = HashMap::new();
        for (writer, len) in blocks {
            let u = next
                .entry(writer)
                .or_insert_with(|| map.get(&writer).copied().unwrap_or_default());
            u.bytes += len;
            u.blocks += 1;
            u.last_write = now;
        }
        for (w, u) in &next {
            batch.put(key(*w), u.encode());
        }
        next
    }

    /// Moves charges between writers (blocks reclaimed, or passed to
    /// another holder): `deltas` maps a writer to (bytes, blocks) to add,
    /// negative to take off (never below zero). Like [`UsageBook::charge`],
    /// the values go into `batch` and are visible after [`UsageBook::commit`].
    pub fn adjust(
        &self,
        deltas: &HashMap<u32, (i64, i64)>,
        batch: &mut WriteBatch,
    ) -> HashMap<u32, Usage> {
        let map = self.by_writer.lock().expect("usage lock");
        let mut next = HashMap::new();
        for (w, (bytes, blocks)) in deltas {
            let mut u = map.get(w).copied().unwrap_or_default();
            u.bytes = u.bytes.saturating_add_signed(*bytes);
            u.blocks = u.blocks.saturating_add_signed(*blocks);
            batch.put(key(*w), u.encode());
            next.insert(*w, u);
        }
        next
    }

    /// Makes charged values visible after their batch was written.
    pub fn commit(&self, next: HashMap<u32, Usage>) {
        self.by_writer.lock().expect("usage lock").extend(next);
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
