//! `eventi put PATH | -`: a file, a tree or stdin stored by itself (no
//! snapshot), and its capability printed; with `--follows`, as the next
//! drop of a chain.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use eventi::backup::exclude::Excluder;
use eventi::backup::{self, Options};
use eventi::format::capability::{self, Envelope};
use eventi::home::Home;
use eventi::progress::Counters;
use eventi::repo::{Access, Repo};
use eventi::share::Reader;

/// Options of `eventi put`.
#[derive(clap::Args)]
pub struct Args {
    /// The file or directory to store, or `-` for stdin.
    path: PathBuf,
    /// Make it the next drop of the chain this capability ends (a line,
    /// `-` for stdin, or @FILE).
    #[arg(long, value_name = "CAPABILITY")]
    follows: Option<String>,
    /// The name it is stored under (default: the file's name; `stdin`).
    #[arg(long)]
    name: Option<String>,
    /// A server the line names as holding it (repeatable; default: the
    /// home's servers).
    #[arg(long = "server", value_name = "HOST:PORT")]
    servers: Vec<String>,
    /// Name no server in the line.
    #[arg(long, conflicts_with = "servers")]
    no_hints: bool,
    /// Print a JSON object (capability and what was sent).
    #[arg(long)]
    json: bool,
    /// Read the passphrase from this file.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.path.as_os_str() == "-" && args.follows.as_deref() == Some("-") {
        anyhow::bail!("stdin cannot be both the data and the capability it follows");
    }
    let repo = Repo::open(args.passphrase_file.as_deref(), Access::Write)?;
    let follows = match &args.follows {
        Some(arg) => Some(earlier_drop(&repo, arg)?),
        None => None,
    };
    let mut excluder = Excluder::new(&[], &[])?;
    for dir in Home::locate()?.dirs() {
        excluder.exclude_exactly(dir.to_path_buf());
    }
    let options = Options {
        paths: vec![args.path.clone()],
        excluder: Arc::new(excluder),
        tags: Vec::new(),
        no_cache: false,
        checkpoint_bytes: 512 << 20,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()) * 4,
    };
    let put = if args.path.as_os_str() == "-" {
        let name = args.name.as_deref().unwrap_or("stdin");
        let stdin = std::io::stdin().lock();
        backup::put::stream(&repo, &options, stdin, name.as_bytes())?
    } else {
        let warn = |p: &Path, what: &str| eprintln!("eventi: {}: {what}", p.display());
        backup::put::path(&repo, &options, Arc::new(Counters::default()), &warn)?
    };
    let mut entry = put.entry.clone();
    if let Some(name) = &args.name {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            anyhow::bail!("--name {name:?} is not a file name");
        }
        entry.name = name.as_bytes().to_vec();
    }
    let kind = capability::kind_of(&entry, follows.is_some())
        .map_err(|why| anyhow::anyhow!("{}: {why}", args.path.display()))?;
    let envelope = Envelope {
        kind,
        time_ns: eventi::fsmeta::now_ns(),
        follows,
        base: put.base.clone(),
        entry,
    };
    let cap = eventi::share::store_envelope(&repo, &envelope)?;
    let hints = super::hints(&repo, &args.servers, args.no_hints);
    let cap = cap.with_hints(&hints).context("a server hint")?;
    repo.close()?;
    if args.json {
        let mut v = serde_json::to_value(&put)?;
        v["capability"] = cap.to_line().into();
        v["kind"] = cap.kind.word().into();
        println!("{v}");
    } else {
        eprintln!(
            "sent {} new blocks ({}); {} were already stored",
            put.sent_blocks,
            super::human_bytes(put.sent_bytes),
            put.known_blocks
        );
        super::print_capability(&cap);
    }
    Ok(ExitCode::SUCCESS)
}

/// The line of the drop a new one follows, once its envelope is found
/// and opens (in this home's store, or on the servers it hints): a typo
/// or a made-up capability never starts a chain.
fn earlier_drop(repo: &Repo, arg: &str) -> anyhow::Result<String> {
    let cap = super::reading::read(arg).context("--follows")?;
    let reader = Reader::of_store(
        Arc::clone(repo.store()),
        repo.config.timeout()?,
        eventi::share::pins_of(&repo.config),
    );
    reader.add(&cap.hints);
    reader
        .envelope(&cap)
        .context("--follows: the earlier drop could not be read")?;
    Ok(cap.to_line())
}
