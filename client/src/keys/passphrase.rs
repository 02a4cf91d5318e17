//! Where a passphrase comes from: `--passphrase-file`, `$EVENTI_PASSPHRASE`,
//! or a prompt on the terminal (twice when choosing a new one).

use std::io::IsTerminal;
use std::path::Path;

use zeroize::Zeroizing;

/// Why no passphrase was had.
#[derive(Debug, thiserror::Error)]
pub enum PassphraseError {
    /// The passphrase file could not be read.
    #[error("reading passphrase file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// None was supplied and there is no terminal to ask on.
    #[error("no passphrase: set {0} or pass a passphrase file (there is no terminal to ask on)")]
    NoTerminal(String),
    /// The terminal could not be read.
    #[error("reading the passphrase from the terminal: {0}")]
    Prompt(#[from] std::io::Error),
    /// The two entries of a new passphrase differ.
    #[error("the passphrases differ; nothing was changed")]
    Mismatch,
    /// The passphrase is empty.
    #[error("an empty passphrase would leave the key file unprotected")]
    Empty,
}

/// Reads a passphrase without a prompt if one is supplied, else asks.
/// `confirm` asks twice (for a new passphrase). `env` names the variable.
pub fn get(
    file: Option<&Path>,
    env: &str,
    prompt: &str,
    confirm: bool,
) -> Result<Zeroizing<String>, PassphraseError> {
    if let Some(f) = file {
        warn_if_others_can_read(f);
        let text =
            Zeroizing::new(
                std::fs::read_to_string(f).map_err(|source| PassphraseError::File {
                    path: f.display().to_string(),
                    source,
                })?,
            );
        return non_empty(Zeroizing::new(
            text.trim_end_matches(['\n', '\r']).to_string(),
        ));
    }
    if let Ok(p) = std::env::var(env) {
        return non_empty(Zeroizing::new(p));
    }
    if !std::io::stdin().is_terminal() {
        return Err(PassphraseError::NoTerminal(env.to_string()));
    }
    let first = Zeroizing::new(rpassword::prompt_password(format!("{prompt}: "))?);
    if confirm {
        let second = Zeroizing::new(rpassword::prompt_password(format!("{prompt} again: "))?);
        if *first != *second {
            return Err(PassphraseError::Mismatch);
        }
    }
    non_empty(first)
}

/// A passphrase file that other users can read gives the key file away
/// to whoever also reaches it: say so, as OpenSSH does of private keys
/// (a warning rather than a refusal, so that a scheduled backup still
/// runs and its log shows the fix).
fn warn_if_others_can_read(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.mode() & 0o777;
        if mode & 0o044 != 0 {
            eprintln!(
                "eventi: warning: passphrase file {} is readable by other users (mode {mode:04o}): chmod 600 it",
                path.display()
            );
        }
    }
}

fn non_empty(p: Zeroizing<String>) -> Result<Zeroizing<String>, PassphraseError> {
    if p.is_empty() {
        return Err(PassphraseError::Empty);
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From a file: one trailing newline is not part of it; an empty one
    /// and a missing file are refused, by name.
    #[test]
    fn passphrase_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pass");
        let unset = "EVENTI_TEST_PASSPHRASE_NEVER_SET";
        std::fs::write(&f, "correct horse\n").unwrap();
        assert_eq!(
            get(Some(&f), unset, "P", false).unwrap().as_str(),
            "correct horse"
        );
        std::fs::write(&f, "\n").unwrap();
        assert!(matches!(
            get(Some(&f), unset, "P", false),
            Err(PassphraseError::Empty)
        ));
        let missing = dir.path().join("none");
        let err = get(Some(&missing), unset, "P", false).unwrap_err();
        assert!(matches!(err, PassphraseError::File { .. }), "{err}");
        assert!(err.to_string().contains("none"), "{err}");
    }
}
