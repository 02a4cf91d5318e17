//! What each writer may store, decided by the store's user (the server's
//! key registry) and enforced by the committer at commit time.

/// How much a writer may store; see [`QuotaPolicy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteLimit {
    /// No limit (the embedded store, or a server without keys).
    Unlimited,
    /// At most this many bytes of new blocks in all.
    Bytes(u64),
    /// No writes at all, with the reason to give.
    Refused(&'static str),
}

/// Decides, at commit time, what each writer may store. The check runs
/// under the commit lock against committed usage plus the rest of the
/// batch, so a quota is never overshot, however many connections write.
pub trait QuotaPolicy: Send + Sync {
    /// The limit for `writer`.
    fn limit(&self, writer: u32) -> WriteLimit;
}
