//! The client's block stores behave the same: the embedded local store
//! and a real eventi-server over loopback, with and without a write key.

use bytes::Bytes;
use eventi::store::local::LocalStore;
use eventi::store::multi::MultiStore;
use eventi::store::venti::VentiStore;
use eventi::store::{put_wait, BlockStore, StoreError};
use eventi_shared::client::DEFAULT_TIMEOUT;
use eventi_shared::{BlockType, Score};
use eventi_tests::{keys_cli, new_key, pattern, public_line, Server};

/// What every store must do.
fn contract(store: &dyn BlockStore, seed: u64) -> Vec<(Score, Bytes)> {
    let mut kept = Vec::new();
    for i in 0..50u64 {
        let data = Bytes::from(pattern(seed + i, 100 + i as usize * 997));
        let score = put_wait(store, BlockType::DATA, data.clone()).unwrap();
        assert_eq!(score, Score::of(&data));
        // Idempotent.
        assert_eq!(
            put_wait(store, BlockType::DATA, data.clone()).unwrap(),
            score
        );
        kept.push((score, data));
    }
    store.sync().unwrap();
    for (score, data) in &kept {
        let back = store.get(*score, BlockType::DATA).unwrap();
        assert!(back == *data, "{} read back different bytes", store.name());
    }
    // The zero score is the empty block; the wrong type is a missing block.
    assert!(store.get(Score::ZERO, BlockType::ROOT).unwrap().is_empty());
    assert_eq!(
        put_wait(store, BlockType::DATA, Bytes::new()).unwrap(),
        Score::ZERO
    );
    let err = store.get(kept[0].0, BlockType::ROOT).unwrap_err();
    assert!(matches!(err, StoreError::Missing { .. }), "{err}");
    assert!(err.to_string().contains(&kept[0].0.to_string()), "{err}");
    kept
}

#[test]
fn local_store_keeps_its_blocks_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let store = LocalStore::open(&path).unwrap();
    let kept = contract(&store, 1);
    store.close().unwrap();
    drop(store);
    let store = LocalStore::open(&path).unwrap();
    for (score, data) in &kept {
        assert!(store.get(*score, BlockType::DATA).unwrap() == *data);
    }
}

#[test]
fn venti_store_with_a_write_key_and_anonymously() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = new_key();
    keys_cli(&data, &["add", "me", &public_line(&key), "--quota", "1GiB"]);
    let server = Server::start_strict(&data, &[]);
    let addr = server.addr.to_string();

    let store = VentiStore::connect(&addr, Some(key), DEFAULT_TIMEOUT).unwrap();
    contract(&store, 1000);

    // Without a key, this server refuses writes, and says why.
    let anon = VentiStore::connect(&addr, None, DEFAULT_TIMEOUT).unwrap();
    let err = put_wait(&anon, BlockType::DATA, Bytes::from_static(b"x")).unwrap_err();
    assert!(
        err.to_string().contains("write needs an authorized key"),
        "{err}"
    );
}

/// Several stores as one pass the same contract; a block in one of them
/// is read from it; a failure names every store that failed.
#[test]
fn a_multi_store_reads_from_any_and_names_every_failure() {
    let dir = tempfile::tempdir().unwrap();
    let a = std::sync::Arc::new(LocalStore::open(&dir.path().join("a")).unwrap());
    let b = std::sync::Arc::new(LocalStore::open(&dir.path().join("b")).unwrap());
    let only_b = Bytes::from_static(b"a block only the second store has");
    let score = put_wait(b.as_ref(), BlockType::DATA, only_b.clone()).unwrap();
    let both = MultiStore::new(vec![a.clone(), b.clone()]);
    contract(&both, 2000);
    assert!(both.get(score, BlockType::DATA).unwrap() == only_b);
    let err = both
        .get(Score::of(b"nowhere"), BlockType::DATA)
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Missing { store, .. } if store.contains(" + ")),
        "{err}"
    );

    // Two servers that both refuse anonymous writes: both are named.
    let servers: Vec<Server> = (0..2)
        .map(|i| Server::start_strict(&dir.path().join(format!("data{i}")), &[]))
        .collect();
    let remote: Vec<std::sync::Arc<dyn BlockStore>> = servers
        .iter()
        .map(|s| {
            let v = VentiStore::connect(&s.addr.to_string(), None, DEFAULT_TIMEOUT).unwrap();
            std::sync::Arc::new(v) as std::sync::Arc<dyn BlockStore>
        })
        .collect();
    let refused = MultiStore::new(remote.clone());
    let err = put_wait(&refused, BlockType::DATA, Bytes::from_static(b"y")).unwrap_err();
    assert!(
        matches!(err, StoreError::Several(ref all) if all.len() == 2),
        "{err}"
    );
    for s in &servers {
        assert!(err.to_string().contains(&s.addr.to_string()), "{err}");
    }
    // One refusing, one taking it: the error is the refusing one's alone.
    let mixed = MultiStore::new(vec![a.clone(), remote[0].clone()]);
    let err = put_wait(&mixed, BlockType::DATA, Bytes::from_static(b"z")).unwrap_err();
    assert!(!matches!(err, StoreError::Several(_)), "{err}");
    assert!(
        err.to_string().contains(&servers[0].addr.to_string()),
        "{err}"
    );
}
