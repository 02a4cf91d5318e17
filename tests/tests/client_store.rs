//! The client's block stores behave the same: the embedded local store
//! and a real eventi-server over loopback, with and without a write key.

use bytes::Bytes;
use eventi::store::local::LocalStore;
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
