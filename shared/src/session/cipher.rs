//! Which AEAD a session uses, and how the two ends agree on it: the
//! server offers AES-GCM in its clear version line, the client asks with
//! its marker line.

/// What an encrypting client writes where a plain client writes its
/// version line (no venti version line starts with `e`): ChaCha20-Poly1305.
pub const MARKER: &[u8] = b"eventi-noise-1\n";
/// The same, asking for AES-256-GCM: sent only to a server whose version
/// line says it has AES in hardware ([`AES_COMMENT`]), by a client that
/// has too.
pub const MARKER_AES: &[u8] = b"eventi-noise-1-aes\n";
/// The Noise protocol name of [`MARKER`]'s sessions.
pub const PATTERN: &str = "Noise_NX_25519_ChaChaPoly_BLAKE2s";
/// The Noise protocol name of [`MARKER_AES`]'s sessions.
pub const PATTERN_AES: &str = "Noise_NX_25519_AESGCM_BLAKE2s";
/// The software field of an eventi-server's version line.
pub const COMMENT: &str = "eventi";
/// The software field of an eventi-server's version line when its CPU
/// has AES instructions: it takes [`MARKER_AES`] too.
pub const AES_COMMENT: &str = "eventi-aes";

/// The transport cipher of a session. Both are AEADs with 256-bit keys;
/// AES-GCM is 3x faster than ChaCha20-Poly1305 with AES instructions
/// (`docs/PERFORMANCE.md`) and far slower without, so it is used only
/// when both ends have them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cipher {
    /// ChaCha20-Poly1305 ([`MARKER`]).
    ChaChaPoly,
    /// AES-256-GCM ([`MARKER_AES`]).
    AesGcm,
}

impl Cipher {
    /// The Noise protocol name.
    pub fn pattern(self) -> &'static str {
        match self {
            Cipher::ChaChaPoly => PATTERN,
            Cipher::AesGcm => PATTERN_AES,
        }
    }

    /// The marker line a client sends for it (with its newline).
    pub fn marker(self) -> &'static [u8] {
        match self {
            Cipher::ChaChaPoly => MARKER,
            Cipher::AesGcm => MARKER_AES,
        }
    }

    /// The cipher a client's marker line (without its newline) asks for.
    pub fn from_marker(line: &[u8]) -> Option<Cipher> {
        [Cipher::ChaChaPoly, Cipher::AesGcm]
            .into_iter()
            .find(|c| c.marker().strip_suffix(b"\n") == Some(line))
    }

    /// What a client uses with a server whose clear version line is
    /// `server_line`.
    pub fn for_server(server_line: &[u8]) -> Cipher {
        let line = server_line.strip_suffix(b"\n").unwrap_or(server_line);
        let aes = [b"-", AES_COMMENT.as_bytes()].concat();
        if line.ends_with(&aes) && has_fast_aes() {
            Cipher::AesGcm
        } else {
            Cipher::ChaChaPoly
        }
    }
}

/// Whether this CPU has AES (and carry-less multiplication, for GCM) in
/// hardware.
pub fn has_fast_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The software field this machine's eventi-server puts in its version
/// line: [`AES_COMMENT`] where it has AES instructions.
pub fn server_comment() -> &'static str {
    if has_fast_aes() {
        AES_COMMENT
    } else {
        COMMENT
    }
}

/// Whether a server's version line (with or without its newline) is an
/// eventi-server's, which offers encrypted sessions.
pub fn is_eventi_line(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    [COMMENT, AES_COMMENT]
        .iter()
        .any(|c| line.ends_with(&[b"-", c.as_bytes()].concat()))
}
