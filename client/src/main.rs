//! `eventi`: the encrypted backup client. One module per command in
//! `cmd/`; the work itself is in the library.

mod cmd;

use clap::{Parser, Subcommand};

/// What `eventi --version` says beyond the version: the formats it
/// writes and reads (docs/FORMAT.md) and the protocols it speaks
/// (docs/PROTOCOL.md).
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nwrites: blocks v1 (XChaCha20-Poly1305, HMAC-SHA-256 keys), trees v3 (extents, leaf blocks), \
directories v1, snapshot roots v1, history records v1, capabilities v1, key files v1 \
(write-only v2)",
    "\nreads: the same, and trees v1 and v2 (32 KiB chunks)",
    "\nspeaks: venti 02 and 04; eventi extensions: write-key auth v1, encrypted sessions \
(eventi-noise-1), queries, heads, prune"
);

/// Encrypted, deduplicating backups into venti blocks.
#[derive(Parser)]
#[command(name = "eventi", version, long_version = LONG_VERSION, about)]
struct Cli {
    /// How long a server may stay silent before the command gives up on
    /// it (30s, 2m; default: the config's `timeout`, else 60s).
    #[arg(long, global = true, value_name = "DURATION", value_parser = eventi_shared::time::parse_duration)]
    timeout: Option<std::time::Duration>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a key file and config in $EVENTI_HOME (or ~/.config/eventi).
    Init(cmd::init::Args),
    /// Back up files and directories into a new snapshot.
    #[command(
        after_help = "Prints the new snapshot's root score (40 hex digits) as the last line on \
stdout. Exit status: 0 done; 1 failed, and no snapshot was made; 3 the snapshot was made \
but some entries could not be read (each is named on stderr). The first backup on an \
uninitialized home creates its key file."
    )]
    Backup(cmd::backup::Args),
    /// List the snapshots, newest first.
    Snapshots(cmd::snapshots::Args),
    /// List what a snapshot (or a capability) holds.
    Ls(cmd::ls::Args),
    /// Write a file from a snapshot (or a capability) to stdout.
    Cat(cmd::cat::Args),
    /// Show what changed between two snapshots.
    Diff(cmd::diff::Args),
    /// Restore a snapshot, or part of one, into a directory.
    #[command(
        after_help = "SNAP is a root score, a unique hex prefix of one in the chain, or `latest`; \
PATH is absolute within the snapshot. Files already there with the right size and mtime \
are skipped (with --verify, only once their content matches), so a rerun finishes an \
interrupted restore. Exit status 1 if any entry was \
not restored (each is named on stderr); no partial file is ever left."
    )]
    Restore(cmd::restore::Args),
    /// Print the capability of a file or directory tree in a snapshot: one
    /// line that reads it, and nothing else, with no key or account.
    Share(cmd::share::Args),
    /// Store a file, a tree or stdin by itself (no snapshot) and print its
    /// capability; with --follows, as the next drop of a chain.
    Put(cmd::put::Args),
    /// Fetch what a capability reads (no key, config or home needed).
    #[command(
        after_help = "Exit status 1 if anything was not fetched (each is named on stderr); a file \
is written under a temporary name and renamed into place only when every block checked out."
    )]
    Get(cmd::get::Args),
    /// List a drop chain, newest first.
    Log(cmd::log::Args),
    /// Show the public write key, check it against a server, or change the passphrase.
    #[command(subcommand)]
    Key(cmd::key::Command),
    /// Report, per server of the circle, the blocks it lacks (or holds damaged).
    #[command(
        after_help = "Exit status 0 only when every server holds every block of the snapshot(s) \
(and, with --read-data, every copy is intact)."
    )]
    Check(cmd::check::Args),
    /// Copy to every server of the circle the blocks it lacks.
    Repair(cmd::repair::Args),
    /// Remove snapshots from the chain, by a retention policy or by name.
    #[command(
        after_help = "The rules are restic's: snapshots are grouped (by host and paths), and in each group --keep-last N keeps the N newest, --keep-daily N the newest of each of the N newest days that have one (local time; likewise hourly, weekly by ISO week, monthly, yearly), --keep-within SPAN all within SPAN of the newest, --keep-tag all with the tags. While a count is left at the oldest snapshot, the oldest is kept too. Nothing is deleted: the head moves to a signed history record that lists the kept snapshots."
    )]
    Forget(cmd::forget::Args),
    /// Give back the space of blocks no kept snapshot needs any more.
    #[command(
        after_help = "Each eventi-server of the circle (and the embedded store) is told which of this key's blocks the kept snapshots, the machine list and this home's drops still reach; it lets go of the key's other blocks stored before its grace period (24 h by default), and reclaims a block once no key holds it. A plain venti server cannot give space back: it is named and left unchanged. Exit status 1 if a store that can prune failed."
    )]
    Prune(cmd::prune::Args),
    /// Mount snapshots (or a capability) as a read-only filesystem.
    #[command(
        after_help = "With no SNAP: one directory per snapshot of the chain, named by time (UTC) and short root score, and `latest`, a link to the newest. Nothing is loaded up front: directories and files are read from the store as they are opened, through a cache of decrypted blocks (`mount_cache` in the config, 32MiB by default). The embedded store is opened read-only, so backups go on meanwhile (a mount shows what existed when it started). A block that cannot be read is an I/O error for its file only, logged with its path and the server. Ctrl-C, SIGTERM or `fusermount3 -u MOUNTPOINT` unmounts."
    )]
    Mount(cmd::mount::Args),
    /// Serve snapshots (or a capability) read-only over 9P2000, for
    /// plan9port's 9p and 9pfuse and Linux's v9fs.
    #[command(
        name = "serve-9p",
        after_help = "The same tree as `eventi mount`. Speaks 9P2000 and 9P2000.u (symbolic links, devices and numeric ids); no authentication, so it listens on loopback unless told otherwise. Prints the address it listens on as its first line on stdout. Linux: `mount -t 9p -o trans=tcp,port=5640,version=9p2000.u,ro 127.0.0.1 /mnt`; plan9port: `9p -a tcp!127.0.0.1!5640 ls /`."
    )]
    Serve9p(cmd::serve_9p::Args),
    /// The circle of servers backups go to: add, list, remove.
    #[command(subcommand)]
    Server(cmd::server::Command),
    /// Print the shell completion script for bash, zsh, fish, elvish or
    /// powershell.
    #[command(
        after_help = "bash: `eventi completions bash > ~/.local/share/bash-completion/completions/eventi`; zsh: `eventi completions zsh > _eventi` in a directory of $fpath; fish: `eventi completions fish > ~/.config/fish/completions/eventi.fish`."
    )]
    Completions(eventi_shared::cli_docs::CompletionsArgs),
    /// Write the manual pages (eventi.1, eventi-SUBCOMMAND.1) into a directory.
    #[command(
        name = "man-pages",
        after_help = "Prints the paths written. Install them under ~/.local/share/man/man1 (or /usr/local/share/man/man1) and read them with `man eventi-backup`."
    )]
    ManPages(eventi_shared::cli_docs::ManPagesArgs),
}

fn main() -> std::process::ExitCode {
    // A reader that goes away (`eventi ls ... | head`) ends the command
    // quietly, as it ends `ls` and `git log`, instead of a panic in
    // println!. Rust ignores SIGPIPE by default; restore the default.
    // SAFETY: called before any thread exists; SIG_DFL is always valid.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if let Some(t) = cli.timeout {
        eventi::home::config::override_timeout(t);
    }
    let result = match cli.command {
        Command::Init(args) => cmd::init::run(args),
        Command::Backup(args) => cmd::backup::run(args),
        Command::Snapshots(args) => cmd::snapshots::run(args),
        Command::Ls(args) => cmd::ls::run(args),
        Command::Cat(args) => cmd::cat::run(args),
        Command::Diff(args) => cmd::diff::run(args),
        Command::Restore(args) => cmd::restore::run(args),
        Command::Share(args) => cmd::share::run(args),
        Command::Put(args) => cmd::put::run(args),
        Command::Get(args) => cmd::get::run(args),
        Command::Log(args) => cmd::log::run(args),
        Command::Key(cmd) => cmd::key::run(cmd).map(|()| std::process::ExitCode::SUCCESS),
        Command::Server(cmd) => cmd::server::run(cmd),
        Command::Check(args) => cmd::check::run(args),
        Command::Repair(args) => cmd::repair::run(args),
        Command::Forget(args) => cmd::forget::run(args),
        Command::Prune(args) => cmd::prune::run(args),
        Command::Mount(args) => cmd::mount::run(args),
        Command::Serve9p(args) => cmd::serve_9p::run(args),
        Command::Completions(args) => Ok(args.run::<Cli>()),
        Command::ManPages(args) => args.run::<Cli>().map_err(Into::into),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("eventi: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
