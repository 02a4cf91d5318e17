//! Shell completions and manual pages, generated from a binary's clap
//! definition, so that both say exactly what the parser accepts: the
//! `completions` and `man-pages` commands of `eventi` and `eventi-server`.

use std::io::Write;
use std::path::{Path, PathBuf};

pub use clap_complete::Shell;

/// Options of `completions` (both binaries).
#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

impl CompletionsArgs {
    /// Prints the script for the binary whose parser is `C`.
    pub fn run<C: clap::CommandFactory>(&self) -> std::process::ExitCode {
        completions(&mut C::command(), self.shell, &mut std::io::stdout());
        std::process::ExitCode::SUCCESS
    }
}

/// Options of `man-pages` (both binaries).
#[derive(clap::Args)]
pub struct ManPagesArgs {
    /// Where to write the pages (made if missing).
    dir: PathBuf,
}

impl ManPagesArgs {
    /// Writes the pages of the binary whose parser is `C` and prints
    /// their paths.
    pub fn run<C: clap::CommandFactory>(&self) -> std::io::Result<std::process::ExitCode> {
        let written = man_pages(&C::command(), &self.dir).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("writing manual pages into {}: {e}", self.dir.display()),
            )
        })?;
        for path in written {
            println!("{}", path.display());
        }
        Ok(std::process::ExitCode::SUCCESS)
    }
}

/// Writes the completion script for `shell` of the command `cmd`.
pub fn completions(cmd: &mut clap::Command, shell: Shell, out: &mut dyn Write) {
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, cmd, name, out);
}

/// Writes one manual page (section 1) per command into `dir`: the binary
/// itself (`eventi.1`) and every subcommand at any depth
/// (`eventi-backup.1`, `eventi-key-show.1`), `help` aside. Returns the
/// files written.
pub fn man_pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd.clone();
    cmd.build();
    let mut written = Vec::new();
    let version = cmd.get_version().unwrap_or_default().to_string();
    write_pages(&cmd, cmd.get_name(), &version, dir, &mut written)?;
    Ok(written)
}

fn write_pages(
    cmd: &clap::Command,
    name: &str,
    version: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let page = cmd
        .clone()
        .name(name.to_string())
        .version(version.to_string());
    let path = dir.join(format!("{name}.1"));
    let mut bytes = Vec::new();
    clap_mangen::Man::new(page).render(&mut bytes)?;
    std::fs::write(&path, bytes)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(
            sub,
            &format!("{name}-{}", sub.get_name()),
            version,
            dir,
            written,
        )?;
    }
    Ok(())
}
