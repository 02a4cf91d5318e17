//! Giving disk space back after a prune: what compaction is asked to do
//! and what it did. The log engine does the work (`log/compact.rs`):
//! segments whose live fraction is below a threshold have their live
//! records copied to the log's tail and are then removed; in the others,
//! holes are punched over the dead records (no live byte moves).

use crate::StoreError;

/// Runs one step of compaction with block commits held off (the
/// committer's lock), so that no block is stored, marked or let go while
/// the step moves index entries.
pub type Exclusive<'a> =
    dyn Fn(&mut dyn FnMut() -> Result<(), StoreError>) -> Result<(), StoreError> + 'a;

/// What to compact, and how fast.
#[derive(Clone, Debug)]
pub struct CompactOptions {
    /// Segments whose live bytes are below this fraction of their size
    /// are copied forward and removed (0.0 to 1.0); the others get holes
    /// punched over their dead records.
    pub live_below: f64,
    /// Bytes copied per second at most (`None`: as fast as the disk
    /// goes), so that serving stays responsive.
    pub bytes_per_second: Option<u64>,
    /// Set to stop the pass at the next step (shutdown); what it did is
    /// kept, and the next pass carries on.
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl CompactOptions {
    /// Whether the pass was asked to stop.
    pub fn stopped(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
    }
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            live_below: 0.3,
            bytes_per_second: None,
            stop: None,
        }
    }
}

/// What a compaction pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Segments looked at.
    pub segments: u64,
    /// Segments copied forward and removed.
    pub removed: u64,
    /// Segments that kept their live records in place and had holes
    /// punched over their dead ones.
    pub punched: u64,
    /// Live blocks copied.
    pub blocks_copied: u64,
    /// Their record bytes.
    pub bytes_copied: u64,
    /// Bytes given back: the removed segments less what was copied, and
    /// the disk blocks the punched ones released.
    pub bytes_freed: u64,
}
