//! The owner's list of write-only machines, kept on the servers too, so
//! that a home recovered from the key alone (`eventi init --recover`)
//! lists the machines' chains again. The list is a small stream of lines
//! `name TAB key-line` stored like a file, under a snapshot root that
//! only the owner opens (tag [`TAG`]), and the owner's head named
//! [`HEAD`] points at the newest such root (`docs/FORMAT.md`).

use anyhow::{bail, Context};
use eventi_shared::{BlockType, Score};

use crate::format::snapshot::{Counts, Snapshot};
use crate::home::config::Machine;
use crate::repo::Repo;
use crate::store::heads::SetOutcome;
use crate::stream::{self, StoreSink};

/// The owner's head that names the newest list.
pub const HEAD: &str = "eventi.machines";
/// The tag of a list's root, which is not a backup.
pub const TAG: &str = "eventi-machines";

/// The list's stream: one `name TAB key` line per machine.
pub fn encode(machines: &[Machine]) -> Vec<u8> {
    let mut out = String::new();
    for m in machines {
        out.push_str(&m.name);
        out.push('\t');
        out.push_str(&m.key);
        out.push('\n');
    }
    out.into_bytes()
}

/// The machines of a list's stream (lines that do not parse are skipped).
pub fn decode(stream: &[u8]) -> Vec<Machine> {
    String::from_utf8_lossy(stream)
        .lines()
        .filter_map(|l| {
            let (name, key) = l.split_once('\t')?;
            eventi_shared::public_key::parse(key).ok()?;
            Some(Machine {
                name: name.to_string(),
                key: key.to_string(),
                head: None,
            })
        })
        .collect()
}

/// Stores the config's list under a new root and points the owner's
/// [`HEAD`] at it on every server that keeps heads. Returns how many
/// servers took it (0 where none keeps heads: the list then lives in
/// `config.toml` alone).
pub fn publish(repo: &Repo) -> anyhow::Result<usize> {
    let Some(heads) = repo.destination.heads() else {
        return Ok(0);
    };
    let write = repo.key.full("publish the machine list")?.write();
    let heads = heads.for_key(write.signing_key().verifying_key().to_bytes(), HEAD);
    let previous = heads.fetch().newest.map(|(h, _)| h.seq).unwrap_or(0);
    let store = repo.store().as_ref();
    let sink = StoreSink::new(store);
    let (tree, _) = stream::write(
        &sink,
        write.convergence(),
        &encode(&repo.config.machines)[..],
    )?;
    sink.finish()?;
    let root = Snapshot {
        tree,
        parent: None,
        time_ns: crate::fsmeta::now_ns(),
        host: crate::fsmeta::hostname(),
        paths: Vec::new(),
        tags: vec![TAG.to_string()],
        counts: Counts::default(),
    };
    let block = root.seal(&write.owner().snapshot, write.signing_key());
    let score = crate::store::put_wait(store, BlockType::DATA, block.into())?;
    store.sync()?;
    let outcomes = heads.set(write.signing_key(), score, previous + 1, &repo.up_labels());
    let mut kept = 0;
    for (label, outcome) in outcomes {
        match outcome {
            SetOutcome::Set => kept += 1,
            SetOutcome::Unsupported => {}
            SetOutcome::Stale(e) | SetOutcome::Pruned(e) | SetOutcome::Failed(e) => {
                eprintln!("eventi: {label} did not keep the machine list: {e}")
            }
        }
    }
    Ok(kept)
}

/// The newest list the servers keep for this key (empty if none).
pub fn fetch(repo: &Repo) -> anyhow::Result<Vec<Machine>> {
    let Some(heads) = repo.destination.heads() else {
        return Ok(Vec::new());
    };
    let own = repo.key.write_public().to_bytes();
    let found = heads.for_key(own, HEAD).fetch();
    let Some((head, _)) = found.newest else {
        return Ok(Vec::new());
    };
    let root: Score = head.root;
    let (snapshot, signer) = repo.load_signed(root).context("reading the machine list")?;
    if !repo.is_own_key(&signer) || !snapshot.tags.iter().any(|t| t == TAG) {
        bail!("the machine list's head names a root that is not this key's machine list");
    }
    let stream = stream::read_all(repo.store().as_ref(), &snapshot.tree)?;
    Ok(decode(&stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_and_bad_lines_are_skipped() {
        let key = eventi_shared::public_key::format(
            &ed25519_dalek::SigningKey::from_bytes(&[7; 32])
                .verifying_key()
                .to_bytes(),
            "",
        );
        let machines = vec![
            Machine {
                name: "laptop2".into(),
                key: key.clone(),
                head: None,
            },
            Machine {
                name: "nas".into(),
                key,
                head: None,
            },
        ];
        let text = encode(&machines);
        assert_eq!(decode(&text), machines);
        let mut bad = text.clone();
        bad.extend_from_slice(b"no tab here\nx\tnot a key\n");
        assert_eq!(decode(&bad), machines);
    }
}
