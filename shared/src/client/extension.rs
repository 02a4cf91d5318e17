//! eventi's extension requests on a [`VentiClient`]: presence queries
//! and key information. Sent only to a server whose Rhello sid carries
//! eventi's write-key challenge ([`VentiClient::speaks_eventi`]); a
//! server that answers `unknown request` (an older eventi-server) is
//! reported as [`ClientError::Unsupported`], so that callers fall back
//! on plain venti.

use super::{expect, ClientError, VentiClient};
use crate::codec::extension::MAX_HAS;
use crate::codec::prune::{PruneCommitted, PruneReply, PruneRequest, PruneStatus};
use crate::codec::Message;
use crate::head::SignedHead;
use crate::{auth, BlockType, Score};

/// A key as the server sees it (Rkeyinfo).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// Its name on the server (`anonymous` for a session without a key).
    pub name: String,
    /// Bytes it may store (`u64::MAX`: no limit; 0: may not write).
    pub quota: u64,
    /// Bytes it has stored.
    pub used: u64,
    /// Blocks it has stored.
    pub blocks: u64,
}

impl VentiClient {
    /// Whether the server is an eventi-server (its sid carries eventi's
    /// challenge), so that extension requests may be sent to it.
    pub fn speaks_eventi(&self) -> bool {
        auth::parse_challenge(self.sid()).is_some()
    }

    async fn extension(&self, request: Message) -> Result<Message, ClientError> {
        if !self.speaks_eventi() {
            return Err(ClientError::Unsupported);
        }
        match self.rpc(request).await {
            Err(ClientError::Server(e)) if e.starts_with("unknown request") => {
                Err(ClientError::Unsupported)
            }
            other => other,
        }
    }

    /// Which of `keys` the server holds, in order, without reading them;
    /// any number of keys (sent [`MAX_HAS`] per request, pipelined on the
    /// connection by tasks of the current runtime).
    pub async fn has(&self, keys: &[(Score, BlockType)]) -> Result<Vec<bool>, ClientError> {
        let mut tasks = tokio::task::JoinSet::new();
        for (index, chunk) in keys.chunks(MAX_HAS).enumerate() {
            let client = self.clone();
            let chunk = chunk.to_vec();
            tasks.spawn(async move { (index, client.has_one(chunk).await) });
        }
        let mut answers: Vec<Option<Vec<bool>>> = vec![None; keys.len().div_ceil(MAX_HAS)];
        while let Some(done) = tasks.join_next().await {
            let (index, present) = done.map_err(|_| ClientError::Disconnected)?;
            answers[index] = Some(present?);
        }
        Ok(answers.into_iter().flatten().flatten().collect())
    }

    async fn has_one(&self, keys: Vec<(Score, BlockType)>) -> Result<Vec<bool>, ClientError> {
        let asked = keys.len();
        let reply = self.extension(Message::Thas { keys }).await?;
        let present = expect(reply, "rhas", |m| match m {
            Message::Rhas { present } => Some(present),
            _ => None,
        })?;
        if present.len() != asked {
            return Err(ClientError::UnexpectedReply {
                expected: "rhas with one flag per score",
                got: "rhas of another length",
            });
        }
        Ok(present)
    }

    /// The session's key, its quota and usage.
    pub async fn keyinfo(&self) -> Result<KeyInfo, ClientError> {
        let reply = self.extension(Message::Tkeyinfo).await?;
        expect(reply, "rkeyinfo", |m| match m {
            Message::Rkeyinfo {
                name,
                quota,
                used,
                blocks,
            } => Some(KeyInfo {
                name,
                quota,
                used,
                blocks,
            }),
            _ => None,
        })
    }

    /// Head `name` of write key `key`, if the server keeps one. (The
    /// caller verifies its signature: the server is not trusted with it.)
    pub async fn head_get(
        &self,
        key: [u8; 32],
        name: &str,
    ) -> Result<Option<SignedHead>, ClientError> {
        let reply = self
            .extension(Message::Theadget {
                key,
                name: name.to_string(),
            })
            .await?;
        expect(reply, "rheadget", |m| match m {
            Message::Rheadget { head } => Some(head),
            _ => None,
        })
    }

    /// Sets head `name` of the session's write key; the server refuses
    /// one whose sequence is not above its own (Rerror `stale head`) and,
    /// given the prune `epoch` the snapshot was made in, one made before
    /// a prune committed (Rerror `pruned`).
    pub async fn head_set(
        &self,
        name: &str,
        head: SignedHead,
        epoch: Option<u64>,
    ) -> Result<(), ClientError> {
        let reply = self
            .extension(Message::Theadset {
                name: name.to_string(),
                head,
                epoch,
            })
            .await?;
        expect(reply, "rheadset", |m| {
            matches!(m, Message::Rheadset).then_some(())
        })
    }
}

impl VentiClient {
    async fn prune(&self, request: PruneRequest) -> Result<PruneReply, ClientError> {
        let reply = self.extension(Message::Tprune { request }).await?;
        expect(reply, "rprune", |m| match m {
            Message::Rprune { reply } => Some(reply),
            _ => None,
        })
    }

    async fn prune_state(&self, request: PruneRequest) -> Result<PruneStatus, ClientError> {
        match self.prune(request).await? {
            PruneReply::Status { status, .. } => Ok(status),
            _ => Err(ClientError::UnexpectedReply {
                expected: "rprune with a status",
                got: "rprune of another op",
            }),
        }
    }

    /// The session's key's prune state (its epoch first of all).
    pub async fn prune_status(&self) -> Result<PruneStatus, ClientError> {
        self.prune_state(PruneRequest::Status).await
    }

    /// Starts (or starts over) marking what the session's key needs.
    pub async fn prune_begin(&self) -> Result<PruneStatus, ClientError> {
        self.prune_state(PruneRequest::Begin).await
    }

    /// Marks `keys` as needed by the session's key (any number, sent
    /// [`MAX_HAS`] per request and pipelined); says which are stored.
    pub async fn prune_mark(&self, keys: &[(Score, BlockType)]) -> Result<Vec<bool>, ClientError> {
        let mut tasks = tokio::task::JoinSet::new();
        for (index, chunk) in keys.chunks(MAX_HAS).enumerate() {
            let client = self.clone();
            let keys = chunk.to_vec();
            tasks.spawn(async move {
                let asked = keys.len();
                let reply = client.prune(PruneRequest::Mark { keys }).await;
                (index, asked, reply)
            });
        }
        let mut answers: Vec<Option<Vec<bool>>> = vec![None; keys.len().div_ceil(MAX_HAS)];
        while let Some(done) = tasks.join_next().await {
            let (index, asked, reply) = done.map_err(|_| ClientError::Disconnected)?;
            match reply? {
                PruneReply::Marked { present } if present.len() == asked => {
                    answers[index] = Some(present)
                }
                _ => {
                    return Err(ClientError::UnexpectedReply {
                        expected: "rprune with one flag per score",
                        got: "another rprune",
                    })
                }
            }
        }
        Ok(answers.into_iter().flatten().flatten().collect())
    }

    /// Lets go of what the key did not mark, if its heads are still
    /// `heads` (name, sequence).
    pub async fn prune_commit(
        &self,
        heads: Vec<(String, u64)>,
    ) -> Result<PruneCommitted, ClientError> {
        match self.prune(PruneRequest::Commit { heads }).await? {
            PruneReply::Committed(c) => Ok(c),
            _ => Err(ClientError::UnexpectedReply {
                expected: "rprune of a commit",
                got: "rprune of another op",
            }),
        }
    }
}
