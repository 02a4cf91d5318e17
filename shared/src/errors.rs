//! Server error texts that clients recognise. Venti's Rerror carries only
//! a string, so the server and the client agree here on how the errors a
//! client acts on begin; everything after the prefix is for people.

/// An Rerror a client treats specially.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnownError {
    /// The block asked for is not stored (a read is then "missing", not a
    /// failed server).
    NoBlock,
    /// The server refuses new blocks to keep its free-space reserve.
    DiskFull,
    /// The server's copy of the block is damaged (its bytes do not hash
    /// to its score, or its log record is unreadable): another server's
    /// copy may be good.
    Corrupt,
    /// A head set refused: the server holds a sequence as high or higher
    /// (another machine backed up meanwhile).
    StaleHead,
    /// A head set refused: a prune of the key committed after the
    /// snapshot's backup began (its blocks must be marked again).
    Pruned,
}

impl KnownError {
    const ALL: [KnownError; 5] = [
        KnownError::NoBlock,
        KnownError::DiskFull,
        KnownError::Corrupt,
        KnownError::StaleHead,
        KnownError::Pruned,
    ];

    /// How the Rerror text begins.
    pub const fn prefix(self) -> &'static str {
        match self {
            KnownError::NoBlock => "no block",
            KnownError::DiskFull => "server disk full",
            KnownError::Corrupt => "corrupt block",
            KnownError::StaleHead => "stale head",
            KnownError::Pruned => "pruned",
        }
    }

    /// Which known error `text` is, if any.
    pub fn classify(text: &str) -> Option<KnownError> {
        Self::ALL.into_iter().find(|k| text.starts_with(k.prefix()))
    }
}

#[cfg(test)]
mod tests {
    use super::KnownError;

    #[test]
    fn texts_classify_by_prefix() {
        assert_eq!(
            KnownError::classify("no block with score 00/13 exists"),
            Some(KnownError::NoBlock)
        );
        assert_eq!(
            KnownError::classify("server disk full: 3 MiB free, 4 MiB kept in reserve"),
            Some(KnownError::DiskFull)
        );
        assert_eq!(
            KnownError::classify("corrupt block: block 00 type 13 is corrupt"),
            Some(KnownError::Corrupt)
        );
        assert_eq!(KnownError::classify("quota exceeded"), None);
    }
}
