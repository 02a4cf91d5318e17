//! Theadget and Theadset: the signed snapshot heads kept per write key
//! (eventi extension; bytes in `docs/PROTOCOL.md`). Anyone may read a
//! head by naming its public key; only a session authenticated as that
//! key may set one, and only with a valid signature and a sequence above
//! the stored one (compare-and-swap: of two machines racing, the second
//! is told, never silently overwritten).

use std::time::Instant;

use eventi_shared::head::{self, SignedHead, MAX_HEADS_PER_KEY};
use eventi_shared::Message;
use eventi_store::{StoreError, Table};

use super::rerror;
use super::session::Session;
use crate::metrics::Kind;

fn record_id(key: &[u8; 32], name: &str) -> Vec<u8> {
    let mut id = key.to_vec();
    id.extend_from_slice(name.as_bytes());
    id
}

impl Session<'_> {
    /// Answers a Theadget.
    pub(super) fn handle_head_get(&mut self, tag: u8, key: [u8; 32], name: &str, started: Instant) {
        let message = if !head::valid_name(name) {
            rerror("bad head name")
        } else {
            match self
                .shared
                .store
                .get_record(Table::Heads, &record_id(&key, name))
            {
                Ok(value) => Message::Rheadget {
                    head: value.as_deref().and_then(SignedHead::from_bytes),
                },
                Err(e) => rerror(e),
            }
        };
        self.reply(tag, message, Kind::Query, started)
    }

    /// Answers a Theadset.
    pub(super) fn handle_head_set(
        &mut self,
        tag: u8,
        name: &str,
        new: SignedHead,
        epoch: Option<u64>,
        started: Instant,
    ) {
        let message = match self.set_head(name, new, epoch) {
            Ok(()) => Message::Rheadset,
            Err(why) => rerror(why),
        };
        self.reply(tag, message, Kind::Query, started)
    }

    fn set_head(&mut self, name: &str, new: SignedHead, epoch: Option<u64>) -> Result<(), String> {
        let Some(key) = self.writer_key else {
            return Err("setting a head needs an authorized key".into());
        };
        if !head::valid_name(name) {
            return Err("bad head name: 1 to 64 of A-Z a-z 0-9 . _ -".into());
        }
        if !head::verify(&key, name, &new) {
            return Err("head signature does not verify for this session's key".into());
        }
        let store = &self.shared.store;
        let failed = |e: StoreError| e.to_string();
        let id = record_id(&key, name);
        let _one = self.shared.heads_lock.lock().expect("heads lock");
        super::prune::check_epoch(store, self.writer, epoch)?;
        // Compare-and-swap: on a bucket several servers share, another
        // may set the head between the read and the write; then read
        // again, and the sequence check says who won.
        for _ in 0..8 {
            let old = store.get_record(Table::Heads, &id).map_err(failed)?;
            match &old {
                Some(old) => {
                    let old = SignedHead::from_bytes(old);
                    if let Some(old) = old.filter(|old| old.seq >= new.seq) {
                        return Err(format!(
                            "{}: this server has sequence {} (root {})",
                            eventi_shared::errors::KnownError::StaleHead.prefix(),
                            old.seq,
                            old.root
                        ));
                    }
                }
                None => {
                    let held = store
                        .scan_records(Table::Heads)
                        .map_err(failed)?
                        .iter()
                        .filter(|(id, _)| id.starts_with(&key))
                        .count();
                    if held >= MAX_HEADS_PER_KEY {
                        return Err(format!(
                            "this key keeps {MAX_HEADS_PER_KEY} heads already, the most it may"
                        ));
                    }
                }
            }
            if store
                .swap_record(Table::Heads, &id, old.as_deref(), &new.to_bytes())
                .map_err(failed)?
            {
                if store.shares_records() {
                    // A prune through another front-end holds no lock of
                    // this one: it raises the epoch, then reads the heads.
                    // Read the epoch after setting the head, so one of the
                    // two sees the other; a head that lost is taken back.
                    if let Err(why) = super::prune::check_epoch(store, self.writer, epoch) {
                        let back = match &old {
                            Some(old) => {
                                store.swap_record(Table::Heads, &id, Some(&new.to_bytes()), old)
                            }
                            None => store.put_record(Table::Heads, &id, None).map(|()| true),
                        };
                        if !matches!(back, Ok(true)) {
                            tracing::error!(key = %self.writer_label, head = name, "a head set during a prune could not be taken back");
                        }
                        return Err(why);
                    }
                }
                tracing::info!(key = %self.writer_label, head = name, seq = new.seq, "head set");
                return Ok(());
            }
        }
        Err("the head kept changing while it was being set; try again".into())
    }
}
