//! Tprune against the real server, key by key: a prune lets go only of
//! its own key's blocks, a block another key (or an anonymous writer)
//! holds stays, usage moves exactly, nothing within the grace period
//! goes, a commit is refused when the key's heads moved, and a head set
//! made in an older epoch is refused.

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use eventi_shared::client::{ClientOptions, ServerKey};
use eventi_shared::head;
use eventi_shared::{BlockType, ClientError, Score, VentiClient};
use eventi_tests::{config_file, keys_cli, new_key, pattern, public_line, Server};

async fn as_key(server: &Server, key: &SigningKey) -> VentiClient {
    let options = ClientOptions {
        write_key: Some(key.clone()),
        server_key: ServerKey::Learn,
        ..ClientOptions::default()
    };
    VentiClient::connect_with(server.addr, options)
        .await
        .unwrap()
}

/// (bytes, blocks, reclaimed bytes) charged to `name`.
fn usage(data: &std::path::Path, name: &str) -> (u64, u64, u64) {
    let list: serde_json::Value =
        serde_json::from_str(&keys_cli(data, &["list", "--json"])).unwrap();
    let e = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"]["name"] == name)
        .unwrap_or_else(|| panic!("no key {name} in {list}"));
    (
        e["used_bytes"].as_u64().unwrap(),
        e["used_blocks"].as_u64().unwrap(),
        e["reclaimed_bytes"].as_u64().unwrap(),
    )
}

fn server(
    dir: &std::path::Path,
    grace: u64,
) -> (std::path::PathBuf, Server, SigningKey, SigningKey) {
    let data = dir.join("data");
    let (alice, bob) = (new_key(), new_key());
    keys_cli(
        &data,
        &["add", "alice", &public_line(&alice), "--quota", "1GiB"],
    );
    keys_cli(
        &data,
        &["add", "bob", &public_line(&bob), "--quota", "1GiB"],
    );
    let config = config_file(dir, &format!("[prune]\ngrace_secs = {grace}\n"));
    let s = Server::start(&data, &["--config", config.to_str().unwrap()]);
    (data, s, alice, bob)
}

async fn write(c: &VentiClient, data: &Bytes) -> Score {
    let s = c.write(BlockType::DATA, data.clone()).await.unwrap();
    c.sync().await.unwrap();
    s
}

/// References are stamped in whole seconds.
async fn next_second() {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
}

#[tokio::test]
async fn a_keys_prune_lets_go_of_its_own_blocks_only() {
    let dir = tempfile::tempdir().unwrap();
    let (data, server, alice, bob) = server(dir.path(), 0);
    let (a, b) = (as_key(&server, &alice).await, as_key(&server, &bob).await);
    let anon = VentiClient::connect(server.addr).await.unwrap();
    let shared = Bytes::from(pattern(1, 4000));
    let alone = Bytes::from(pattern(2, 3000));
    let kept = Bytes::from(pattern(3, 2000));
    let anonymous = Bytes::from(pattern(4, 1000));
    let shared_score = write(&a, &shared).await;
    let alone_score = write(&a, &alone).await;
    let kept_score = write(&a, &kept).await;
    write(&b, &shared).await;
    // Alice holds the anonymous block too, by writing it again.
    let anon_score = write(&anon, &anonymous).await;
    write(&a, &anonymous).await;
    assert_eq!(usage(&data, "alice").0, 9000);
    assert_eq!(usage(&data, "bob").0, 0);
    next_second().await;

    // Only an authorized key prunes.
    let err = anon.prune_begin().await.unwrap_err();
    assert!(err.to_string().contains("authorized key"), "{err}");

    let began = a.prune_begin().await.unwrap();
    assert_eq!((began.epoch, began.grace), (0, 0));
    let present = a
        .prune_mark(&[
            (kept_score, BlockType::DATA),
            (Score::of(b"never stored"), BlockType::DATA),
        ])
        .await
        .unwrap();
    assert_eq!(present, [true, false]);
    let done = a.prune_commit(began.heads.clone()).await.unwrap();
    assert_eq!(done.epoch, 1);
    assert_eq!(done.released, 3, "{done:?}");
    assert_eq!((done.dead_blocks, done.dead_bytes), (1, 3000), "{done:?}");
    assert_eq!((done.moved_blocks, done.moved_bytes), (1, 4000), "{done:?}");

    // The block only Alice held is gone; Bob's and the anonymous one stay.
    let gone = anon.read(alone_score, BlockType::DATA, 8192).await;
    assert!(
        matches!(gone, Err(ClientError::Server(ref m)) if m.starts_with("no block")),
        "{gone:?}"
    );
    for (score, bytes) in [
        (shared_score, &shared),
        (kept_score, &kept),
        (anon_score, &anonymous),
    ] {
        assert!(anon.read(score, BlockType::DATA, 8192).await.unwrap() == *bytes);
    }
    // Usage is exact: Alice pays for what she kept; Bob now pays for the
    // shared block.
    assert_eq!(usage(&data, "alice"), (2000, 1, 7000));
    assert_eq!(usage(&data, "bob").0, 4000);

    // Bob's prune (needing nothing) takes the shared block away; the
    // anonymous block stays whoever prunes.
    next_second().await;
    let began = b.prune_begin().await.unwrap();
    let done = b.prune_commit(began.heads).await.unwrap();
    assert_eq!(done.dead_blocks, 1);
    assert!(anon
        .read(shared_score, BlockType::DATA, 8192)
        .await
        .is_err());
    let began = a.prune_begin().await.unwrap();
    a.prune_commit(began.heads).await.unwrap();
    assert!(anon.read(anon_score, BlockType::DATA, 8192).await.unwrap() == anonymous);
    assert!(anon.read(kept_score, BlockType::DATA, 8192).await.is_err());
}

#[tokio::test]
async fn nothing_within_the_grace_period_is_let_go() {
    let dir = tempfile::tempdir().unwrap();
    let (data, server, alice, _) = server(dir.path(), 3600);
    let a = as_key(&server, &alice).await;
    let block = Bytes::from(pattern(5, 5000));
    let score = write(&a, &block).await;
    next_second().await;
    let began = a.prune_begin().await.unwrap();
    assert_eq!(began.grace, 3600);
    let done = a.prune_commit(began.heads).await.unwrap();
    assert_eq!((done.released, done.dead_blocks), (0, 0), "{done:?}");
    assert_eq!(done.epoch, 1);
    assert!(a.read(score, BlockType::DATA, 8192).await.unwrap() == block);
    assert_eq!(usage(&data, "alice").0, 5000);
}

#[tokio::test]
async fn a_commit_after_a_head_moved_and_a_head_from_an_older_epoch_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_data, server, alice, _) = server(dir.path(), 0);
    let a = as_key(&server, &alice).await;
    let old = Bytes::from(pattern(6, 3000));
    let old_score = write(&a, &old).await;
    let root = write(&a, &Bytes::from(pattern(7, 100))).await;
    let status = a.prune_status().await.unwrap();
    assert_eq!(status.epoch, 0);
    a.head_set("default", head::sign(&alice, "default", root, 1), Some(0))
        .await
        .unwrap();
    next_second().await;

    // A head set during the marking: the commit is refused, nothing goes.
    let began = a.prune_begin().await.unwrap();
    assert_eq!(began.heads, [("default".to_string(), 1)]);
    a.head_set("default", head::sign(&alice, "default", root, 2), Some(0))
        .await
        .unwrap();
    let err = a.prune_commit(began.heads).await.unwrap_err();
    assert!(err.to_string().contains("heads moved"), "{err}");
    assert!(a.read(old_score, BlockType::DATA, 8192).await.is_ok());
    assert_eq!(a.prune_status().await.unwrap().epoch, 0);

    // Marked again from the new heads, it commits; a head made in the
    // epoch before is then refused, one in the new epoch taken.
    let began = a.prune_begin().await.unwrap();
    let done = a.prune_commit(began.heads).await.unwrap();
    assert_eq!(done.epoch, 1);
    let err = a
        .head_set("default", head::sign(&alice, "default", root, 3), Some(0))
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with("pruned:") || err.to_string().contains("pruned:"),
        "{err}"
    );
    a.head_set("default", head::sign(&alice, "default", root, 3), Some(1))
        .await
        .unwrap();
    // A client from before prune sends no epoch: not checked.
    a.head_set("default", head::sign(&alice, "default", root, 4), None)
        .await
        .unwrap();
}
