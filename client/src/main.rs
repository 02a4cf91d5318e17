//! `eventi`: the encrypted backup client. Its commands arrive with the
//! backup-client issue; until then this binary only says so.

fn main() -> std::process::ExitCode {
    eprintln!(
        "eventi {}: the backup client is not built yet; run `eventi-server serve` (see README.md)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::ExitCode::FAILURE
}
