//! `eventi serve-9p [--listen 127.0.0.1:5640] [SNAP[:PATH] | CAPABILITY]`:
//! the tree `eventi mount` shows, served read-only over 9P2000.

use std::process::ExitCode;

use anyhow::Context;

/// Options of `eventi serve-9p`.
#[derive(clap::Args)]
pub struct Args {
    /// Where to listen. Anyone who reaches it reads what is served (9P
    /// has no encryption here): keep it on loopback, or behind a tunnel.
    #[arg(long, default_value = "127.0.0.1:5640", value_name = "HOST:PORT")]
    listen: String,
    #[command(flatten)]
    source: super::browsing::Source,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let opened = super::browsing::open(&args.source)?;
    let listener = std::net::TcpListener::bind(&args.listen)
        .with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    if !address.ip().is_loopback() {
        eprintln!(
            "eventi: serving on {address}, which is not loopback: anyone who reaches it reads {}",
            opened.what
        );
    }
    // The address on stdout (a port of 0 picks one), for scripts and tests.
    println!("{address}");
    eprintln!("eventi: serving {} over 9P on {address}", opened.what);
    eventi::ninep::server::serve(listener, opened.browser.clone())?;
    opened.finish("stopped serving")?;
    Ok(ExitCode::SUCCESS)
}
