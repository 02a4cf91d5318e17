//! A venti server as the store: eventi-server (authenticating with the
//! write key when the server offers a challenge) or any plain venti
//! server such as plan9port's (anonymous).

use bytes::Bytes;
use eventi_shared::client::ClientOptions;
use eventi_shared::{BlockType, ClientError, Score, VentiClient, MAX_BLOCK_V02};

use super::{BlockStore, StoreError};

/// See the module documentation.
pub struct VentiStore {
    client: VentiClient,
    name: String,
}

impl VentiStore {
    /// Connects to `addr`. With a write key, authenticates if the server
    /// offers write-key authentication and stays anonymous on a plain
    /// venti server.
    pub async fn connect(
        addr: &str,
        write_key: Option<ed25519_dalek::SigningKey>,
    ) -> Result<VentiStore, StoreError> {
        let failed = |e: ClientError| StoreError::Failed {
            store: addr.to_string(),
            message: e.to_string(),
        };
        let options = ClientOptions {
            write_key: write_key.clone(),
            ..ClientOptions::default()
        };
        let client = match VentiClient::connect_with(addr, options).await {
            Err(ClientError::NoAuth) => VentiClient::connect(addr).await.map_err(failed)?,
            other => other.map_err(failed)?,
        };
        Ok(VentiStore {
            client,
            name: addr.to_string(),
        })
    }

    fn failed(&self, e: ClientError) -> StoreError {
        StoreError::Failed {
            store: self.name.clone(),
            message: e.to_string(),
        }
    }
}

impl BlockStore for VentiStore {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn put(&self, block_type: BlockType, data: Bytes) -> Result<Score, StoreError> {
        if data.is_empty() {
            return Ok(Score::ZERO);
        }
        self.client
            .write(block_type, data)
            .await
            .map_err(|e| self.failed(e))
    }

    async fn get(&self, score: Score, block_type: BlockType) -> Result<Bytes, StoreError> {
        if score.is_zero() {
            return Ok(Bytes::new());
        }
        match self
            .client
            .read(score, block_type, MAX_BLOCK_V02 as u32)
            .await
        {
            Ok(data) => Ok(data),
            Err(ClientError::Server(m)) if m.starts_with("no block") => Err(StoreError::Missing {
                score,
                block_type,
                store: self.name.clone(),
            }),
            Err(e) => Err(self.failed(e)),
        }
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.client.sync().await.map_err(|e| self.failed(e))
    }
}
