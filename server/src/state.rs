//! What the venti listener, the HTTP endpoint and every connection share.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Limits;
use crate::keys::KeyRegistry;
use crate::metrics::Metrics;
use eventi_store::Store;

/// The server's state, one per process, behind an `Arc`.
pub struct Shared {
    /// The block store.
    pub store: Store,
    /// Its data directory (audited for exposure at each metrics scrape).
    pub data: PathBuf,
    /// Metrics to update.
    pub metrics: Arc<Metrics>,
    /// Limits to enforce.
    pub limits: Limits,
    /// Authorized write keys, quotas and rates.
    pub keys: Arc<KeyRegistry>,
    /// Whether sessions without a key may read.
    pub anonymous_reads: bool,
    /// What plain (unencrypted) sessions are refused.
    pub require_encryption: crate::config::RequireEncryption,
    /// Held across a head's compare-and-swap, so two sessions setting
    /// one head cannot both win.
    pub heads_lock: std::sync::Mutex<()>,
    /// The server's identity, which encrypted sessions prove.
    pub identity: crate::identity::Identity,
    /// Prune settings (the grace period).
    pub prune: crate::config::Prune,
    /// The background compaction, woken after a prune commits.
    pub compactor: crate::compactor::Compactor,
}
