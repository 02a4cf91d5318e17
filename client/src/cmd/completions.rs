//! `eventi completions SHELL`: the shell's completion script on stdout,
//! made from the same definitions the parser uses.

use std::process::ExitCode;

use clap::CommandFactory;
use eventi_shared::cli_docs::{self, Shell};

/// Options of `eventi completions`.
#[derive(clap::Args)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// Writes the script.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut cmd = crate::Cli::command();
    cli_docs::completions(&mut cmd, args.shell, &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
