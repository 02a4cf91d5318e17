//! Tauth0: a session proves it holds an authorized write key by signing
//! this connection's challenge (the bytes are in `docs/PROTOCOL.md`).

use std::sync::Arc;
use std::time::Instant;

use eventi_shared::{auth, Message};
use eventi_store::ANONYMOUS;

use super::rerror;
use super::session::Session;
use crate::metrics::Kind;

impl Session<'_> {
    /// Answers a Tauth0.
    pub(super) fn handle_auth(
        &mut self,
        tag: u8,
        key: &[u8; 32],
        signature: &[u8; 64],
        started: Instant,
    ) {
        let message = self.authenticate(key, signature);
        self.reply(tag, message, Kind::Auth, started);
    }

    /// Checks a Tauth0 against this session's challenge, and binds the
    /// session to the key if it is authorized.
    fn authenticate(&mut self, key: &[u8; 32], signature: &[u8; 64]) -> Message {
        let metrics = &self.shared.metrics;
        if self.writer != ANONYMOUS {
            metrics.auth_failure("twice");
            return rerror("already authenticated on this connection");
        }
        if let Err(e) = auth::verify(
            key,
            signature,
            &self.challenge,
            self.version.as_str(),
            &self.uid,
            self.binding.as_ref(),
        ) {
            metrics.auth_failure("bad signature");
            return rerror(format!("authentication failed: {e}"));
        }
        match self.shared.keys.by_public(key) {
            Some(entry) => {
                tracing::info!(key = %entry.name, fingerprint = %entry.fingerprint(), "session authenticated");
                self.writer = entry.id;
                self.writer_label = Arc::from(entry.name.as_str());
                self.writer_key = Some(*key);
                self.stored_counter = self.shared.metrics.key_stored_counter(&entry.name);
                Message::Rauth0
            }
            None => {
                metrics.auth_failure("unknown key");
                rerror("authentication failed: key not authorized on this server")
            }
        }
    }
}
