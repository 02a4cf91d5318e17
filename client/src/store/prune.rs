//! What a store of the circle offers a prune of the owner's key
//! (`eventi prune`, `crate::prune`): its prune state and heads, marking,
//! the commit, and for the embedded store compaction on the spot. An
//! eventi-server speaks Tprune (`docs/PROTOCOL.md`, "Prune"); a plain
//! venti server cannot give space back and offers none of it.

use eventi_shared::codec::prune::{PruneCommitted, PruneStatus};
use eventi_shared::head::SignedHead;
use eventi_shared::{BlockType, Score};
use eventi_store::compact::CompactReport;

use super::StoreError;

/// See the module documentation.
pub trait Prunable: Send + Sync {
    /// The key's prune state here; `None` where the store cannot prune.
    fn prune_status(&self) -> Result<Option<PruneStatus>, StoreError>;
    /// Starts (or starts over) marking; the state, with the key's heads.
    fn prune_begin(&self) -> Result<PruneStatus, StoreError>;
    /// Marks blocks as still needed; says which are stored.
    fn prune_mark(&self, keys: &[(Score, BlockType)]) -> Result<Vec<bool>, StoreError>;
    /// Lets go of what was not marked, if the key's heads are still
    /// `heads`.
    fn prune_commit(&self, heads: Vec<(String, u64)>) -> Result<PruneCommitted, StoreError>;
    /// Checks head sets against `epoch` from now on (the snapshot's
    /// blocks were marked again in it).
    fn adopt_epoch(&self, epoch: u64) {
        let _ = epoch;
    }
    /// Head `name` of `key` as this store keeps it (`None`: none here).
    fn head(&self, key: [u8; 32], name: &str) -> Result<Option<SignedHead>, StoreError> {
        let _ = (key, name);
        Ok(None)
    }
    /// Gives the space back now, for a store that does not do it by
    /// itself (the embedded one); `None` for a server, which compacts in
    /// the background.
    fn compact(&self) -> Result<Option<CompactReport>, StoreError> {
        Ok(None)
    }
}
