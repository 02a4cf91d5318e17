//! The client's block stores behave the same: the embedded local store
//! and a real eventi-server over loopback, with and without a write key.

use bytes::Bytes;
use eventi::store::circle::{Circle, Joined};
use eventi::store::local::LocalStore;
use eventi::store::venti::VentiStore;
use eventi::store::{put_wait, BlockStore, StoreError};
use eventi_shared::client::{ServerKey, DEFAULT_TIMEOUT};
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

    let store = VentiStore::connect(&addr, Some(key), ServerKey::Learn, DEFAULT_TIMEOUT).unwrap();
    contract(&store, 1000);

    // Without a key, this server refuses writes, and says why.
    let anon = VentiStore::connect(&addr, None, ServerKey::Plain, DEFAULT_TIMEOUT).unwrap();
    let err = put_wait(&anon, BlockType::DATA, Bytes::from_static(b"x")).unwrap_err();
    assert!(
        err.to_string().contains("write needs an authorized key"),
        "{err}"
    );
}

/// A circle of `stores` needing `copies`; its warnings are collected.
fn circle_of(
    stores: Vec<std::sync::Arc<dyn BlockStore>>,
    copies: usize,
) -> (Circle, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&heard);
    let joined = stores
        .into_iter()
        .map(|s| Joined {
            name: s.name(),
            address: s.name(),
            store: Ok((s, None)),
        })
        .collect();
    let warn = Box::new(move |m: &str| log.lock().unwrap().push(m.to_string()));
    (Circle::new(joined, copies, warn), heard)
}

/// Several stores as a circle pass the same contract; a block in one of
/// them is read from it; a member that refuses is marked down and named,
/// and the circle fails only below its copies.
#[test]
fn a_circle_reads_from_any_and_fails_only_below_its_copies() {
    let dir = tempfile::tempdir().unwrap();
    let a = std::sync::Arc::new(LocalStore::open(&dir.path().join("a")).unwrap());
    let b = std::sync::Arc::new(LocalStore::open(&dir.path().join("b")).unwrap());
    let only_b = Bytes::from_static(b"a block only the second store has");
    let score = put_wait(b.as_ref(), BlockType::DATA, only_b.clone()).unwrap();
    let (both, heard) = circle_of(vec![a.clone(), b.clone()], 2);
    contract(&both, 2000);
    assert!(both.get(score, BlockType::DATA).unwrap() == only_b);
    assert!(
        heard
            .lock()
            .unwrap()
            .iter()
            .any(|m| m.contains("lacks block")),
        "the member without it is named once: {:?}",
        heard.lock().unwrap()
    );
    let err = both
        .get(Score::of(b"nowhere"), BlockType::DATA)
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Missing { store, .. } if store.contains(" + ")),
        "{err}"
    );
    // A check the stored copy fails is a damaged block, not a good one.
    let err = both
        .get_checked(score, BlockType::DATA, &[0; 32])
        .unwrap_err();
    assert!(
        err.to_string().contains("is damaged") && err.to_string().contains("/b"),
        "{err}"
    );

    // Two servers that both refuse anonymous writes: with copies = 2 the
    // put fails naming both.
    let servers: Vec<Server> = (0..2)
        .map(|i| Server::start_strict(&dir.path().join(format!("data{i}")), &[]))
        .collect();
    let remote: Vec<std::sync::Arc<dyn BlockStore>> = servers
        .iter()
        .map(|s| {
            let v =
                VentiStore::connect(&s.addr.to_string(), None, ServerKey::Plain, DEFAULT_TIMEOUT)
                    .unwrap();
            std::sync::Arc::new(v) as std::sync::Arc<dyn BlockStore>
        })
        .collect();
    let (refused, _) = circle_of(remote.clone(), 2);
    let err = put_wait(&refused, BlockType::DATA, Bytes::from_static(b"y")).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::TooFewCopies {
                copies: 2,
                up: 0,
                ..
            }
        ),
        "{err}"
    );
    for s in &servers {
        assert!(err.to_string().contains(&s.addr.to_string()), "{err}");
    }
    // One refusing, one taking it, copies = 1: the put succeeds, the
    // refusing one is down and named, and it gets no more writes.
    let (mixed, heard) = circle_of(vec![a.clone(), remote[0].clone()], 1);
    put_wait(&mixed, BlockType::DATA, Bytes::from_static(b"z")).unwrap();
    assert_eq!(mixed.up_count(), 1);
    let said = heard.lock().unwrap().join("\n");
    assert!(said.contains(&servers[0].addr.to_string()), "{said}");
    assert!(said.contains("write needs an authorized key"), "{said}");
    mixed.sync().unwrap();
}
