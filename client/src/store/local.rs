//! The embedded store: the server's storage engine in the client process,
//! in a directory under the eventi home. No server needed.

use std::path::Path;

use bytes::Bytes;
use eventi_server::store::{BlockKey, NewBlock, Store, StoreOptions, ANONYMOUS};
use eventi_shared::{BlockType, Score};

use super::{BlockStore, StoreError};

/// See the module documentation.
pub struct LocalStore {
    store: Store,
    name: String,
}

impl LocalStore {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<LocalStore, StoreError> {
        let name = dir.display().to_string();
        let store = Store::open(dir, &StoreOptions::default()).map_err(|e| StoreError::Failed {
            store: name.clone(),
            message: e.to_string(),
        })?;
        Ok(LocalStore { store, name })
    }

    /// Syncs and closes the store.
    pub fn close(self) -> Result<(), StoreError> {
        self.store.shutdown().map_err(|e| self.failed(e))
    }

    fn failed(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Failed {
            store: self.name.clone(),
            message: e.to_string(),
        }
    }
}

impl BlockStore for LocalStore {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn put(&self, block_type: BlockType, data: Bytes) -> Result<Score, StoreError> {
        let score = Score::of(&data);
        if !data.is_empty() {
            let block = NewBlock {
                key: BlockKey { score, block_type },
                data,
                writer: ANONYMOUS,
            };
            self.store.write(block).await.map_err(|e| self.failed(e))?;
        }
        Ok(score)
    }

    async fn get(&self, score: Score, block_type: BlockType) -> Result<Bytes, StoreError> {
        let store = self.store.clone();
        let key = BlockKey { score, block_type };
        let found = tokio::task::spawn_blocking(move || store.read(&key))
            .await
            .map_err(|e| self.failed(e))?
            .map_err(|e| self.failed(e))?;
        found.ok_or_else(|| StoreError::Missing {
            score,
            block_type,
            store: self.name.clone(),
        })
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.store.sync().await.map_err(|e| self.failed(e))
    }
}
