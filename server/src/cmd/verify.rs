//! `eventi-server verify`: read every block and check it hashes to its score.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use eventi_server::store::{open_engine, BlockKey, StoreOptions};
use eventi_shared::Score;

/// Which store to check.
#[derive(clap::Args)]
pub struct Args {
    /// Data directory of a stopped server.
    #[arg(long)]
    data: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let engine = open_engine(&args.data, &StoreOptions::default()).with_context(|| {
        format!(
            "opening {} (is a server still running on it?)",
            args.data.display()
        )
    })?;
    let (mut total, mut good, mut bad, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    engine.for_each_key(&mut |key: BlockKey| {
        total += 1;
        let (t, s) = (key.block_type.to_wire(), key.score);
        match engine.get(&key) {
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
    engine.close()?;
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
