//! The version line both ends send first, and how a version is chosen.
//!
//! Each side writes `venti-<versions>-<comment>\n` and reads the peer's
//! line. As libventi does (`src/libventi/version.c`), the chooser walks the
//! *peer's* list and takes the first version it knows itself. The version
//! decides the framing of every later message.

/// Longest version line accepted, newline included (libventi reads at most
/// `VtMaxStringSize` bytes).
pub const MAX_VERSION_LINE: usize = crate::MAX_STRING;

/// A negotiated protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// `02`: 2-byte frame lengths, so no message over 65535 bytes.
    V02,
    /// `04`: 4-byte frame lengths.
    V04,
}

impl Version {
    /// The version's name as it appears in the version line and in Thello.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V02 => "02",
            Version::V04 => "04",
        }
    }

    /// Bytes in the length prefix of every frame.
    pub fn length_prefix_size(self) -> usize {
        match self {
            Version::V02 => 2,
            Version::V04 => 4,
        }
    }

    /// The version named `token` ("02" or "04"), if it is one.
    pub fn from_token(token: &str) -> Option<Version> {
        match token {
            "04" => Some(Version::V04),
            "02" => Some(Version::V02),
            _ => None,
        }
    }
}

/// The line eventi sends: it offers `04` first, then `02`, like libventi.
pub fn our_line(comment: &str) -> String {
    format!("venti-04:02-{comment}\n")
}

/// Why a peer's version line was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VersionError {
    /// The line is longer than [`MAX_VERSION_LINE`].
    #[error("version line longer than {MAX_VERSION_LINE} bytes")]
    TooLong,
    /// A byte outside 0x20..=0x7f, or no `venti-` prefix.
    #[error("bad format in version string")]
    BadFormat,
    /// No version in the peer's list is one we speak.
    #[error("unable to negotiate version from {0:?}")]
    NoCommonVersion(String),
}

/// Checks one version line (without its newline) and picks the version the
/// way libventi does: the first of the peer's tokens (split on `:` and `-`)
/// that we know.
pub fn negotiate(line: &[u8]) -> Result<Version, VersionError> {
    negotiate_among(line, &[Version::V04, Version::V02])
}

/// Like [`negotiate`], but only versions in `ours` count as known: a side
/// that offered only `02` must not then pick `04`.
pub fn negotiate_among(line: &[u8], ours: &[Version]) -> Result<Version, VersionError> {
    if line.len() >= MAX_VERSION_LINE {
        return Err(VersionError::TooLong);
    }
    if line.iter().any(|&b| !(0x20..=0x7f).contains(&b)) {
        return Err(VersionError::BadFormat);
    }
    let text = std::str::from_utf8(line).map_err(|_| VersionError::BadFormat)?;
    let rest = text.strip_prefix("venti-").ok_or(VersionError::BadFormat)?;
    rest.split([':', '-'])
        .filter_map(Version::from_token)
        .find(|v| ours.contains(v))
        .ok_or_else(|| VersionError::NoCommonVersion(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_first_known_in_peer_order() {
        assert_eq!(negotiate(b"venti-04:02-libventi"), Ok(Version::V04));
        assert_eq!(negotiate(b"venti-02-libventi"), Ok(Version::V02));
        assert_eq!(negotiate(b"venti-02:04-x"), Ok(Version::V02));
        assert_eq!(negotiate(b"venti-99:02"), Ok(Version::V02));
    }

    #[test]
    fn refuses_bad_lines() {
        assert_eq!(negotiate(b"vent-04"), Err(VersionError::BadFormat));
        assert_eq!(negotiate(b"venti-04\x01"), Err(VersionError::BadFormat));
        assert!(matches!(
            negotiate(b"venti-99:05-x"),
            Err(VersionError::NoCommonVersion(_))
        ));
        assert_eq!(
            negotiate(&[b'a'; MAX_VERSION_LINE]),
            Err(VersionError::TooLong)
        );
    }

    #[test]
    fn a_side_picks_only_what_it_offered() {
        assert_eq!(
            negotiate_among(b"venti-04:02-eventi", &[Version::V02]),
            Ok(Version::V02)
        );
        assert!(negotiate_among(b"venti-04-x", &[Version::V02]).is_err());
    }

    #[test]
    fn our_line_negotiates_to_04() {
        let line = our_line("eventi");
        assert_eq!(line, "venti-04:02-eventi\n");
        assert_eq!(negotiate(line.trim_end().as_bytes()), Ok(Version::V04));
    }
}
