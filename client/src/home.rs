//! Where eventi keeps its files: `$EVENTI_HOME` if set, else the XDG
//! config directory (`$XDG_CONFIG_HOME/eventi`, or `~/.config/eventi`).

use std::path::PathBuf;

use anyhow::Context;

/// The eventi home directory.
pub fn dir() -> anyhow::Result<PathBuf> {
    if let Some(h) = std::env::var_os("EVENTI_HOME") {
        return Ok(PathBuf::from(h));
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(x).join("eventi"));
    }
    let home = std::env::var_os("HOME").context("neither EVENTI_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".config").join("eventi"))
}

/// The key file.
pub fn key_file() -> anyhow::Result<PathBuf> {
    Ok(dir()?.join("key"))
}

/// The config file.
pub fn config_file() -> anyhow::Result<PathBuf> {
    Ok(dir()?.join("config.toml"))
}

/// Creates `dir` (and parents) if missing, and makes it private (0700):
/// the home holds the key file, and the cache holds paths and the
/// references that read them.
pub fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", dir.display()))
}
