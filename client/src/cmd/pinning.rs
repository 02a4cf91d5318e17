//! Pinning a server's identity when it joins the circle (`eventi server
//! add`, `eventi init --server`), as SSH pins a host key: given as a line
//! the server's operator sent (`--server-key`, checked against the server
//! if it answers), or learned on first contact, shown as a fingerprint,
//! and trusted only on a terminal's yes or `--trust-on-first-use`.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{bail, Context};
use eventi::store::venti::VentiStore;
use eventi_shared::client::{ClientOptions, ServerKey};
use eventi_shared::session::SessionError;
use eventi_shared::{identity, ClientError, VentiClient};

/// How a new server's identity is to be pinned.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct PinArgs {
    /// The server's identity line (`eventi-x25519 <hex>`, which
    /// `eventi-server identity` prints), as its operator sent it.
    #[arg(long, value_name = "LINE")]
    pub server_key: Option<String>,
    /// Pin whatever identity the server proves on first contact, without
    /// asking (for scripts; check the fingerprint some other way).
    #[arg(long)]
    pub trust_on_first_use: bool,
    /// Talk plain venti to it, unencrypted: only for a server reached
    /// through a tunnel you already trust (WireGuard, SSH) or on this
    /// machine. An eventi-server refuses keyed writes in clear unless
    /// its operator allows them (`--require-encryption none`).
    #[arg(long, conflicts_with_all = ["server_key", "trust_on_first_use"])]
    pub plain: bool,
}

/// The identity line to pin for `address`, or `None` where there is none
/// to pin (a plain venti server, or one that does not answer now).
pub fn pin(address: &str, how: &PinArgs, timeout: Duration) -> anyhow::Result<Option<String>> {
    if how.plain {
        eprintln!("{address}: sessions with it will be plain venti, not encrypted (--plain)");
        return Ok(None);
    }
    if let Some(line) = &how.server_key {
        let key = identity::parse(line).context("--server-key")?;
        let options = ClientOptions {
            server_key: ServerKey::Pinned(key),
            timeout,
            ..ClientOptions::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        match runtime.block_on(VentiClient::connect_with(address, options)) {
            Ok(_) => eprintln!(
                "{address} proves the identity given ({})",
                identity::fingerprint(&key)
            ),
            Err(e @ ClientError::Session(SessionError::WrongServer { .. })) => {
                bail!("{address}: {e}")
            }
            Err(e) => eprintln!(
                "eventi: {address} could not be checked now ({e}); its identity is pinned as given"
            ),
        }
        return Ok(Some(identity::format(&key, "")));
    }
    let store = match VentiStore::connect(address, None, ServerKey::Learn, timeout) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "eventi: {address} does not answer ({}): its identity is not pinned; its sessions will be encrypted but not authenticated until you remove it and add it again (or give --server-key)",
                e.reason()
            );
            return Ok(None);
        }
    };
    let Some(key) = store.server_key() else {
        eprintln!("{address} is a plain venti server: sessions with it are not encrypted");
        return Ok(None);
    };
    let line = identity::format(&key, "");
    let fingerprint = identity::fingerprint(&key);
    if how.trust_on_first_use {
        eprintln!("{address}: pinned its identity {fingerprint} (trusted on first use)");
        return Ok(Some(line));
    }
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        eprintln!("The server at {address} proves the identity\n    {fingerprint}\nCheck it with the server's operator (`eventi-server identity` prints it).");
        eprint!("Trust it and pin it? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(Some(line));
        }
        bail!("{address} was not added: its identity was not trusted");
    }
    bail!(
        "{address} proves the identity {fingerprint}, which nobody has checked: compare it with what its operator's `eventi-server identity` prints, then give --server-key '{line}' (or --trust-on-first-use)"
    )
}
