//! The drops this home made (`eventi put`, `eventi share`), one
//! capability line each in `<data>/drops`, so that `eventi prune` keeps
//! their blocks: a drop is under no snapshot head, and a prune lets go of
//! whatever no head reaches. The file holds capabilities (read access to
//! each drop), so it is private to the user like the key file.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::Home;

fn path(home: &Home) -> PathBuf {
    home.data.join("drops")
}

/// Records a drop's capability line.
pub fn record(home: &Home, line: &str) -> anyhow::Result<()> {
    super::create_private_dir(&home.data)?;
    let p = path(home);
    let mut f = eventi_store::private::file_options()
        .create(true)
        .append(true)
        .open(&p)
        .with_context(|| format!("opening {}", p.display()))?;
    writeln!(f, "{line}").with_context(|| format!("writing {}", p.display()))?;
    f.sync_data()
        .with_context(|| format!("syncing {}", p.display()))
}

/// Every drop recorded, oldest first.
pub fn list(home: &Home) -> anyhow::Result<Vec<String>> {
    let p = path(home);
    match std::fs::read_to_string(&p) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}
