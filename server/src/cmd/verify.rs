//! `eventi-server verify`: read every block and check it hashes to its
//! score, and check that no other user can reach the data directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use eventi_shared::Score;
use eventi_store::{private, BlockKey, Store, StoreOptions};

/// Which store to check.
#[derive(clap::Args)]
pub struct Args {
    /// Data directory of a stopped server.
    #[arg(long)]
    data: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.data.is_dir(),
        "{}: no such data directory",
        args.data.display()
    );
    super::require_owner(&args.data)?;
    let exposures = private::audit(&args.data);
    let store = Store::open(&args.data, &StoreOptions::default()).with_context(|| {
        format!(
            "opening {} (is a server still running on it?)",
            args.data.display()
        )
    })?;
    let (mut total, mut good, mut bad, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    store.for_each_key(&mut |key: BlockKey| {
        total += 1;
        let (t, s) = (key.block_type.to_wire(), key.score);
        match store.read_unverified(&key) {
            Ok(Some(data)) => {
                let actual = Score::of(&data);
                bytes += data.len() as u64;
                if actual == s {
                    good += 1;
                } else {
                    bad += 1;
                    println!("corrupt {s} type {t}: bytes hash to {actual}");
                }
            }
            Ok(None) => {
                bad += 1;
                println!("missing {s} type {t}: indexed but unreadable");
            }
            Err(e) => {
                bad += 1;
                println!("unreadable {s} type {t}: {e}");
            }
        }
        true
    })?;
    println!("verified {total} blocks ({bytes} bytes): {good} good, {bad} bad");
    for e in &exposures {
        println!("exposed {e}");
    }
    println!(
        "data directory: {}",
        if exposures.is_empty() {
            "private to its owner".to_string()
        } else {
            format!("{} ways for other users in", exposures.len())
        }
    );
    store.shutdown()?;
    Ok(if bad == 0 && exposures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
