//! Write keys and heads on a shared bucket: one object each under
//! `records/`, so every front-end reads the same ones; a swap is a
//! conditional write (`If-Match` on the ETag read, `If-None-Match: *`
//! for a new record). Or, where `records_database` names one, rows of a
//! PostgreSQL database (`database.rs`). The other tables stay in the
//! local index.

use bytes::Bytes;

use super::bucket::Bucket;
use super::database::RecordsDatabase;
use super::names::Names;
use super::{S3Engine, S3Options};
use crate::index::Record;
use crate::keyspace::Table;
use crate::StoreError;

impl S3Engine {
    /// The bucket folder (or database table name) of a shared record,
    /// if it is shared: write keys, heads, and each writer's prune state
    /// (its epoch and marking: a backup through one front-end must see a
    /// prune committed through another). A prune table record that is
    /// not a writer's (the space counters, the cutoffs read) is local.
    fn shared_table(table: Table, id: Option<&[u8]>) -> Option<&'static str> {
        match table {
            Table::WriteKeys => Some("keys"),
            Table::Heads => Some("heads"),
            Table::Prune if id.is_none_or(|id| id.len() == 4) => Some("prune"),
            Table::Repack => Some("repack"),
            _ => None,
        }
    }

    /// Record `id` of `table`: from the bucket if the table is shared.
    pub(super) fn record_get(
        &self,
        table: Table,
        id: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match (Self::shared_table(table, Some(id)), &self.database) {
            (Some(t), Some(db)) => db.get(t, id),
            (Some(t), None) => Ok(self
                .bucket
                .get(&self.names.record(t, id))?
                .map(|(b, _)| b.to_vec())),
            (None, _) => self.index.get_record(table, id),
        }
    }

    /// Writes (or deletes) record `id` of `table`.
    pub(super) fn record_put(
        &self,
        table: Table,
        id: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        match (Self::shared_table(table, Some(id)), &self.database) {
            (Some(t), Some(db)) => db.put(t, id, value),
            (Some(t), None) => {
                let name = self.names.record(t, id);
                match value {
                    Some(v) => self.bucket.put(&name, Bytes::copy_from_slice(v)),
                    None => self.bucket.delete(&name),
                }
            }
            (None, _) => self.index.put_record(table, id, value),
        }
    }

    /// Every record of `table`, in id order.
    pub(super) fn record_scan(&self, table: Table) -> Result<Vec<Record>, StoreError> {
        let Some(t) = Self::shared_table(table, None) else {
            return self.index.scan(table);
        };
        if let Some(db) = &self.database {
            return db.scan(t);
        }
        let names = self.bucket.list(&self.names.record_folder(t), None)?;
        let values = self.bucket.get_many(&names)?;
        let mut records: Vec<Record> = names
            .iter()
            .zip(values)
            .filter_map(|(name, v)| Some((self.names.parse_record(t, name)?, v?.to_vec())))
            .collect();
        records.sort();
        Ok(records)
    }

    /// Compare-and-swap of record `id` of `table` (conditional writes
    /// for a shared table).
    pub(super) fn record_swap(
        &self,
        table: Table,
        id: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        let Some(t) = Self::shared_table(table, Some(id)) else {
            return self.index.swap_record(table, id, expected, new);
        };
        if let Some(db) = &self.database {
            return db.swap(t, id, expected, new);
        }
        let name = self.names.record(t, id);
        let current = self.bucket.get(&name)?;
        if current.as_ref().map(|(b, _)| &b[..]) != expected {
            return Ok(false);
        }
        let conditional = match self.conditional.get() {
            Some(c) => *c,
            None => {
                let c = honours_conditional_writes(&self.bucket, &self.names)?;
                *self.conditional.get_or_init(|| c)
            }
        };
        let version = match (conditional, current) {
            // Warned about at open: safe with one front-end only, whose
            // callers serialize their own swaps.
            (false, _) => {
                self.bucket.put(&name, Bytes::copy_from_slice(new))?;
                return Ok(true);
            }
            (true, None) => None,
            (true, Some((_, Some(etag)))) => Some(Some(etag)),
            (true, Some((_, None))) => {
                return Err(StoreError::Bucket {
                    what: "changing",
                    object: format!("{}/{name}", self.bucket.label()),
                    message: "the object store gives no ETag, so it cannot be changed safely"
                        .into(),
                })
            }
        };
        self.bucket
            .put_if(&name, Bytes::copy_from_slice(new), version)
    }
}

/// Connects to the records database if the settings name one, marking
/// the bucket so (`records/in-database`); refuses a store whose records
/// are kept in the other place than the settings say, since front-ends
/// that disagree would each see half of the keys and heads.
pub(super) fn open_database(
    bucket: &Bucket,
    names: &Names,
    s3: &S3Options,
) -> Result<Option<RecordsDatabase>, StoreError> {
    let marker = names.records_in_database();
    let marked = bucket.get(&marker)?.is_some();
    let Some(conninfo) = &s3.records_database else {
        if marked {
            return Err(StoreError::Bucket {
                what: "opening",
                object: format!("{}/{marker}", bucket.label()),
                message: "this store keeps its write keys and heads in a PostgreSQL database: set storage.s3.records_database as its other front-ends do".into(),
            });
        }
        return Ok(None);
    };
    if !marked {
        for t in ["keys", "heads"] {
            if !bucket.list(&names.record_folder(t), None)?.is_empty() {
                return Err(StoreError::Bucket {
                    what: "opening",
                    object: format!("{}/{}", bucket.label(), names.record_folder(t)),
                    message: "this store keeps its write keys and heads in the bucket; moving them into a database is not supported: remove storage.s3.records_database".into(),
                });
            }
        }
    }
    let store = format!("{}/{}", s3.bucket.as_deref().unwrap_or(""), names.format());
    let database = RecordsDatabase::connect(conninfo, bucket.handle(), store)?;
    if !marked {
        bucket.put(&marker, Bytes::from_static(b"postgresql\n"))?;
    }
    tracing::info!(database = %database.label(), "write keys and heads are kept in PostgreSQL");
    Ok(Some(database))
}

/// Whether a create-only write fails when the object exists (Garage,
/// for one, ignores the condition): probed once at start.
pub(super) fn honours_conditional_writes(
    bucket: &Bucket,
    names: &Names,
) -> Result<bool, StoreError> {
    let probe = names.record("probe", &rand::random::<u64>().to_be_bytes());
    bucket.put_if(&probe, Bytes::from_static(b"1"), None)?;
    let refused = !bucket.put_if(&probe, Bytes::from_static(b"2"), None)?;
    bucket.delete(&probe)?;
    if !refused {
        tracing::warn!(bucket = %bucket.label(), "the object store ignores conditional writes: run one front-end on it (heads and new keys need them to be shared safely)");
    }
    Ok(refused)
}
