//! Write keys and heads of an s3 store in PostgreSQL, for object stores
//! whose conditional writes cannot be trusted (Garage ignores them): one
//! row per record, and a compare-and-swap is one `UPDATE … WHERE value =
//! expected` (or `INSERT … ON CONFLICT DO NOTHING` for a new record),
//! which the database serializes. Several stores may share a database:
//! each row names its store (bucket and prefix).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_postgres::{Client, Config, NoTls};

use super::bucket::run_on;
use crate::index::Record;
use crate::StoreError;

/// The table, created if missing. `tbl` is the record table's name
/// (`keys`, `heads`), as in the bucket's `records/<tbl>/`.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS eventi_records (
    store text NOT NULL,
    tbl text NOT NULL,
    id bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (store, tbl, id))";

/// See the module documentation.
pub struct RecordsDatabase {
    config: Config,
    /// The connection, made again when it drops.
    client: Mutex<Option<Arc<Client>>>,
    runtime: Handle,
    /// This store's rows: `bucket/prefix`.
    store: String,
    /// Host and database, for messages.
    label: String,
}

impl RecordsDatabase {
    /// Connects to the database `conninfo` names (libpq's `key=value`
    /// form or a `postgresql://` URL; the password, if one is needed,
    /// from `PGPASSWORD`), on `runtime`, and creates the table if
    /// missing.
    pub fn connect(
        conninfo: &str,
        runtime: Handle,
        store: String,
    ) -> Result<RecordsDatabase, StoreError> {
        let mut config: Config = conninfo.parse().map_err(|e| StoreError::Database {
            what: "reading storage.s3.records_database",
            database: "?".into(),
            message: format!(
                "{e} (it takes libpq's \"host=… dbname=… user=…\" or a postgresql:// URL)"
            ),
        })?;
        if config.get_password().is_some() {
            tracing::warn!("storage.s3.records_database holds a password: set PGPASSWORD in the service's environment instead");
        } else if let Ok(password) = std::env::var("PGPASSWORD") {
            config.password(password);
        }
        config
            .connect_timeout(Duration::from_secs(5))
            .application_name("eventi-server");
        let label = label_of(&config);
        let db = RecordsDatabase {
            config,
            client: Mutex::new(None),
            runtime,
            store,
            label,
        };
        let client = db.client()?;
        let created = db.run("creating table eventi_records", async move {
            client.batch_execute(SCHEMA).await
        });
        if created.is_err() {
            // Two front-ends creating the table at once: one of them
            // fails on the catalogue's unique index; the table is there.
            let client = db.client()?;
            db.run("creating table eventi_records", async move {
                client.batch_execute(SCHEMA).await
            })?;
        }
        Ok(db)
    }

    /// Host and database, for messages and logs.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The live connection, made (again) if there is none.
    fn client(&self) -> Result<Arc<Client>, StoreError> {
        let mut slot = self.client.lock().expect("database client lock");
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(c));
        }
        let config = self.config.clone();
        let label = self.label.clone();
        let client = self.run("connecting", async move {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(database = %label, error = %message_of(&e), "the records database connection ended");
                }
            });
            Ok(client)
        })?;
        let client = Arc::new(client);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        fut: impl std::future::Future<Output = Result<T, tokio_postgres::Error>> + Send + 'static,
    ) -> Result<T, StoreError> {
        run_on(&self.runtime, fut).map_err(|e| StoreError::Database {
            what,
            database: self.label.clone(),
            message: message_of(&e),
        })
    }

    /// Record `id` of table `tbl`.
    pub fn get(&self, tbl: &'static str, id: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let (client, store, id) = (self.client()?, self.store.clone(), id.to_vec());
        self.run("reading a record", async move {
            let row = client
                .query_opt(
                    "SELECT value FROM eventi_records WHERE store = $1 AND tbl = $2 AND id = $3",
                    &[&store, &tbl, &id],
                )
                .await?;
            Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
        })
    }

    /// Writes (or, with `None`, deletes) record `id` of table `tbl`.
    pub fn put(
        &self,
        tbl: &'static str,
        id: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let (client, store, id) = (self.client()?, self.store.clone(), id.to_vec());
        let value = value.map(<[u8]>::to_vec);
        self.run("writing a record", async move {
            match value {
                Some(v) => client
                    .execute(
                        "INSERT INTO eventi_records (store, tbl, id, value) VALUES ($1, $2, $3, $4)
                             ON CONFLICT (store, tbl, id) DO UPDATE SET value = EXCLUDED.value",
                        &[&store, &tbl, &id, &v],
                    )
                    .await?,
                None => {
                    client
                        .execute(
                            "DELETE FROM eventi_records WHERE store = $1 AND tbl = $2 AND id = $3",
                            &[&store, &tbl, &id],
                        )
                        .await?
                }
            };
            Ok(())
        })
    }

    /// Every record of table `tbl`, in id order.
    pub fn scan(&self, tbl: &'static str) -> Result<Vec<Record>, StoreError> {
        let (client, store) = (self.client()?, self.store.clone());
        self.run("listing records", async move {
            let rows = client
                .query(
                    "SELECT id, value FROM eventi_records WHERE store = $1 AND tbl = $2 ORDER BY id",
                    &[&store, &tbl],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1)))
                .collect())
        })
    }

    /// Sets record `id` of table `tbl` to `new` if it is `expected` now
    /// (`None`: if there is none); whether it did.
    pub fn swap(
        &self,
        tbl: &'static str,
        id: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        let (client, store, id) = (self.client()?, self.store.clone(), id.to_vec());
        let (expected, new) = (expected.map(<[u8]>::to_vec), new.to_vec());
        self.run("changing a record", async move {
            let changed = match expected {
                None => client
                    .execute(
                        "INSERT INTO eventi_records (store, tbl, id, value) VALUES ($1, $2, $3, $4)
                             ON CONFLICT (store, tbl, id) DO NOTHING",
                        &[&store, &tbl, &id, &new],
                    )
                    .await?,
                Some(old) => {
                    client
                        .execute(
                            "UPDATE eventi_records SET value = $5
                             WHERE store = $1 AND tbl = $2 AND id = $3 AND value = $4",
                            &[&store, &tbl, &id, &old, &new],
                        )
                        .await?
                }
            };
            Ok(changed == 1)
        })
    }
}

/// `host[:port]/dbname` of a connection's settings (never the password).
fn label_of(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config
        .get_ports()
        .first()
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}{port}/{db}")
}

/// The database's own message where there is one (a refused login, a
/// missing database), not just "db error".
fn message_of(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    }
}
