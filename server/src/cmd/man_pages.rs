//! `eventi-server man-pages DIR`: one manual page per command, made from the
//! same definitions the parser uses.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

/// Options of `eventi-server man-pages`.
#[derive(clap::Args)]
pub struct Args {
    /// Where to write the pages (made if missing).
    dir: PathBuf,
}

/// Writes the pages.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let written = eventi_shared::cli_docs::man_pages(&crate::Cli::command(), &args.dir)
        .with_context(|| format!("writing manual pages into {}", args.dir.display()))?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
