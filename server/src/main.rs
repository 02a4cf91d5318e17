//! The `eventi-server` command: serve, verify, compact, keys, bench, identity.

mod cmd;

use clap::{Parser, Subcommand};

/// A venti server on RocksDB that plan9port's tools use unchanged.
#[derive(Parser)]
#[command(name = "eventi-server", version, about)]
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
        Command::Keys(_) | Command::Verify(_) | Command::Identity(_) | Command::Compact(_)
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
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("eventi-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
