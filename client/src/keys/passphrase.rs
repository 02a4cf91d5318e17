//! Where a passphrase comes from: `--passphrase-file`, `$EVENTI_PASSPHRASE`,
//! or a prompt on the terminal (twice when choosing a new one).

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Context};
use zeroize::Zeroizing;

/// Reads a passphrase without a prompt if one is supplied, else asks.
/// `confirm` asks twice (for a new passphrase). `env` names the variable.
pub fn get(
    file: Option<&Path>,
    env: &str,
    prompt: &str,
    confirm: bool,
) -> anyhow::Result<Zeroizing<String>> {
    if let Some(f) = file {
        warn_if_others_can_read(f);
        let text = Zeroizing::new(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading passphrase file {}", f.display()))?,
        );
        return non_empty(Zeroizing::new(
            text.trim_end_matches(['\n', '\r']).to_string(),
        ));
    }
    if let Ok(p) = std::env::var(env) {
        return non_empty(Zeroizing::new(p));
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "no passphrase: set {env} or pass a passphrase file (there is no terminal to ask on)"
        );
    }
    let first = Zeroizing::new(rpassword::prompt_password(format!("{prompt}: "))?);
    if confirm {
        let second = Zeroizing::new(rpassword::prompt_password(format!("{prompt} again: "))?);
        if *first != *second {
            bail!("the passphrases differ; nothing was changed");
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

fn non_empty(p: Zeroizing<String>) -> anyhow::Result<Zeroizing<String>> {
    if p.is_empty() {
        bail!("an empty passphrase would leave the key file unprotected");
    }
    Ok(p)
}
