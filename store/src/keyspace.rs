//! Every kind of record the index database keeps, and the key prefix that
//! tells it apart. Block keys are the only 21-byte keys (score then type)
//! and have no prefix; every other key starts with its table's prefix,
//! followed by the record's id, and is never 21 bytes long with it, so no
//! record is ever taken for a block.
//!
//! | table      | key                       | value                        |
//! |------------|---------------------------|------------------------------|
//! | (blocks)   | score[20] type[1]         | engine's own (location/data) |
//! | `Meta`     | `\0meta`                  | the meta record (`index.rs`) |
//! | `WriteKeys`| `\x01k` id[4]             | the server's key entry, JSON |
//! | `Usage`    | `\x02u` writer[4]         | bytes, blocks, last write    |
//! | `Heads`    | `\x03h` key[32] name      | root[20] seq[8] signature[64]|
//! | `Refs`     | `\x04r` score[20] type[1] writer[4] | time[8] (`refs.rs`) |
//! | `Features` | `\x05f` name              | `1`: the store has it        |
//! | `Prune`    | `\x06p` writer[4]         | a writer's prune state (`prune.rs`) |
//! | `Prune`    | `\x06p` `space`           | bytes reclaimable, reclaimed |
//! | `Payers`   | `\x07$` score[20] type[1] | writer[4] charged, once moved |
//! | `Remote`   | `\x08s` frontend[8]       | next pack seq[8] to read (s3) |
//! | `Dead`     | `\x09d` score[20] type[1] | a dead block's location (s3)  |
//! | `Packs`    | `\x0an` frontend[8] seq[8] | a pack's length[8] (s3)      |
//! | `Repack`   | `\x0bl` `lease`            | the repack lease (s3, shared) |
//!
//! New tables take the next prefix byte here.

/// A table of records kept beside the blocks, in the same database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// The engine's own position and totals: one record, empty id.
    Meta,
    /// The server's authorized write keys, by key number.
    WriteKeys,
    /// What each writer has stored, by writer number.
    Usage,
    /// Signed snapshot heads, by public key and name (eventi's heads).
    Heads,
    /// Which writers hold each block, by block key and writer.
    Refs,
    /// What this data directory's records already do, by name (one-time
    /// migrations mark themselves done here).
    Features,
    /// Each writer's prune epoch and marking, and the store's space
    /// counters (`prune.rs`).
    Prune,
    /// Who is charged for a block whose first writer let go of it (the
    /// rest are charged to the writer in their log record).
    Payers,
    /// The s3 engine's local cache: how far each front-end's packs are
    /// read into it, by front-end.
    Remote,
    /// The s3 engine's local cache: where blocks no writer holds any
    /// longer lie until their pack is removed, by block key.
    Dead,
    /// The s3 engine's local cache: every pack's length, by pack.
    Packs,
    /// The s3 engine's repack lease, a record every front-end shares.
    Repack,
}

impl Table {
    /// The bytes every key of this table starts with.
    pub const fn prefix(self) -> &'static [u8] {
        match self {
            Table::Meta => b"\0meta",
            Table::WriteKeys => b"\x01k",
            Table::Usage => b"\x02u",
            Table::Heads => b"\x03h",
            Table::Refs => b"\x04r",
            Table::Features => b"\x05f",
            Table::Prune => b"\x06p",
            Table::Payers => b"\x07$",
            Table::Remote => b"\x08s",
            Table::Dead => b"\x09d",
            Table::Packs => b"\x0an",
            Table::Repack => b"\x0bl",
        }
    }

    /// The database key of record `id` in this table.
    pub fn key(self, id: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix().len() + id.len());
        k.extend_from_slice(self.prefix());
        k.extend_from_slice(id);
        debug_assert_ne!(
            k.len(),
            crate::BlockKey::LEN,
            "a record key must not look like a block key"
        );
        k
    }

    /// The id of a database key of this table, if it is one.
    pub fn id_of(self, key: &[u8]) -> Option<&[u8]> {
        key.strip_prefix(self.prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prefixes are pinned: they are in every data directory.
    #[test]
    fn prefixes_are_fixed_and_distinct() {
        let all = [
            Table::Meta,
            Table::WriteKeys,
            Table::Usage,
            Table::Heads,
            Table::Refs,
            Table::Features,
            Table::Prune,
            Table::Payers,
            Table::Remote,
            Table::Dead,
            Table::Packs,
            Table::Repack,
        ];
        assert_eq!(Table::Meta.prefix(), b"\0meta");
        assert_eq!(
            Table::WriteKeys.key(&7u32.to_be_bytes()),
            b"\x01k\0\0\0\x07"
        );
        assert_eq!(Table::Usage.key(&1u32.to_be_bytes()), b"\x02u\0\0\0\x01");
        for a in all {
            for b in all {
                if a != b {
                    assert!(!a.prefix().starts_with(b.prefix()), "{a:?} inside {b:?}");
                }
            }
        }
        assert_eq!(
            Table::Usage.id_of(b"\x02u\0\0\0\x01"),
            Some(&[0u8, 0, 0, 1][..])
        );
        assert_eq!(Table::Usage.id_of(b"\x01k\0\0\0\x01"), None);
    }
}
