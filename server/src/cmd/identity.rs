//! `eventi-server identity`: the server's public identity line (made on
//! first start, or now if the data directory has none yet), to send to
//! friends beside the address, and its fingerprint to read out.

use std::path::PathBuf;
use std::process::ExitCode;

use eventi_server::identity::Identity;
use eventi_shared::identity;

/// Which server.
#[derive(clap::Args)]
pub struct Args {
    /// Data directory.
    #[arg(long)]
    data: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    super::require_owner(&args.data)?;
    eventi_store::private::create_dir(&args.data)?;
    let id = Identity::load_or_create(&args.data)?;
    let public = id.public();
    println!("{}", identity::format(&public, ""));
    eprintln!("fingerprint {}", identity::fingerprint(&public));
    Ok(ExitCode::SUCCESS)
}
