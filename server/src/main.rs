//! The `eventi-server` command: serve, verify, compact, keys, bench, identity.

mod cmd;

use clap::{Parser, Subcommand};

/// What `eventi-server --version` says beyond the version: the formats
/// it writes and reads (docs/FORMAT.md) and the protocols it speaks
/// (docs/PROTOCOL.md).
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nwrites and reads: data log records (EvB1), prune records, the server identity, \
the admin socket exchange (docs/FORMAT.md)",
    "\nspeaks: venti 02 and 04; eventi extensions: write-key auth v1, encrypted sessions \
(eventi-noise-1, -aes), queries, heads, prune"
);

/// A venti server on RocksDB that plan9port's tools use unchanged.
#[derive(Parser)]
#[command(name = "eventi-server", version, long_version = LONG_VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve venti (and HTTP metrics) from a data directory.
    Serve(cmd::serve::Args),
    /// Check that every stored block hashes to its score.
    Verify(cmd::verify::Args),
    /// Give back the space of blocks that prunes let go of (stopped server).
    Compact(cmd::compact::Args),
    /// Drive a venti server with a load and print throughput and latency.
    Bench(cmd::bench::Args),
    /// Authorize write keys and set their quotas.
    Keys(cmd::keys::Args),
    /// Print the server's identity line (its public key, made on first
    /// start) to send to friends beside the address.
    Identity(cmd::identity::Args),
    /// Print the shell completion script for bash, zsh, fish, elvish or
    /// powershell.
    #[command(
        after_help = "bash: `eventi-server completions bash > /usr/share/bash-completion/completions/eventi-server`; zsh: `eventi-server completions zsh > _eventi-server` in a directory of $fpath; fish: `eventi-server completions fish > ~/.config/fish/completions/eventi-server.fish`."
    )]
    Completions(eventi_shared::cli_docs::CompletionsArgs),
    /// Write the manual pages (eventi-server.1, eventi-server-SUBCOMMAND.1)
    /// into a directory.
    #[command(
        name = "man-pages",
        after_help = "Prints the paths written. Install them under /usr/local/share/man/man1 and read them with `man eventi-server-serve`."
    )]
    ManPages(eventi_shared::cli_docs::ManPagesArgs),
}

fn main() -> std::process::ExitCode {
    // Whatever the caller's umask, nothing this process creates (the
    // data directory, RocksDB's files, the admin socket) is open to other
    // users. Set before any thread exists: the umask is process-wide.
    // SAFETY: umask has no preconditions and cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    let cli = Cli::parse();
    // `eventi-server keys list | head` ends quietly, as `ls` does. Not
    // `serve` or `bench`: they write to sockets with writev, and a peer
    // that resets its connection must cost an EPIPE, not the process.
    if matches!(
        cli.command,
        Command::Keys(_)
            | Command::Verify(_)
            | Command::Identity(_)
            | Command::Compact(_)
            | Command::Completions(_)
            | Command::ManPages(_)
    ) {
        // SAFETY: as above, before any thread; SIG_DFL is always valid.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Compact(args) => cmd::compact::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Keys(args) => cmd::keys::run(args),
        Command::Identity(args) => cmd::identity::run(args),
        Command::Completions(args) => Ok(args.run::<Cli>()),
        Command::ManPages(args) => args.run::<Cli>().map_err(Into::into),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("eventi-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
