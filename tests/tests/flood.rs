//! A junk flood from one key must not hurt another key's backup, and must
//! stop at the flooder's quota. Latencies are printed (timing goals belong
//! in benchmarks, see docs/PERFORMANCE.md); the assertions are on
//! correctness: the backup completes, the flood is refused at its quota,
//! and usage never exceeds the quota.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use eventi_shared::client::ClientOptions;
use eventi_shared::{BlockType, ClientError, VentiClient};
use eventi_tests::{keys_cli, new_key, pattern, public_line, Server};

fn add_key(data: &std::path::Path, name: &str, extra: &[&str]) -> SigningKey {
    let key = new_key();
    let line = public_line(&key);
    let mut args = vec!["add", name, line.as_str()];
    args.extend_from_slice(extra);
    keys_cli(data, &args);
    key
}

async fn connect(server: &Server, key: &SigningKey) -> VentiClient {
    let options = ClientOptions {
        write_key: Some(key.clone()),
        server_key: eventi_shared::client::ServerKey::Learn,
        ..ClientOptions::default()
    };
    VentiClient::connect_with(server.addr, options)
        .await
        .unwrap()
}

/// A backup-like workload: `n` new 8 KiB blocks, 16 in flight, then a
/// sync. Returns per-write latencies in microseconds, sorted.
async fn backup(c: &VentiClient, seed: u64, n: u64) -> Vec<u64> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (c, next) = (c.clone(), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return lat;
                }
                let block = Bytes::from(pattern(seed + i, 8192));
                let t = Instant::now();
                c.write(BlockType::DATA, block).await.expect("backup write");
                lat.push(t.elapsed().as_micros() as u64);
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    c.sync().await.unwrap();
    all.sort_unstable();
    all
}

fn pct(sorted: &[u64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q) as usize] as f64 / 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_junk_flood_stops_at_its_quota_and_spares_other_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    const FLOOD_QUOTA: u64 = 256 << 20;
    let flooder = add_key(&data, "flooder", &["--quota", "256MiB"]);
    let backer = add_key(&data, "backer", &["--quota", "1GiB"]);
    let server = Server::start_strict(&data, &[]);

    let b = connect(&server, &backer).await;
    let idle = backup(&b, 1_000_000, 4000).await;

    // The flood: 4 connections x 32 in flight of fresh 56 KiB blocks,
    // each task going until the server refuses it.
    let mut flood = Vec::new();
    let refused = Arc::new(AtomicU64::new(0));
    for conn in 0..4u64 {
        let c = connect(&server, &flooder).await;
        for t in 0..32u64 {
            let (c, refused) = (c.clone(), Arc::clone(&refused));
            flood.push(tokio::spawn(async move {
                let mut i = 0u64;
                loop {
                    let block = Bytes::from(pattern((conn << 40) | (t << 32) | i, 56 * 1024));
                    match c.write(BlockType::DATA, block).await {
                        Ok(_) => i += 1,
                        Err(ClientError::Server(m)) if m == "quota exceeded" => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        Err(e) => panic!("flood write failed unexpectedly: {e}"),
                    }
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = Instant::now();
    let under_flood = backup(&b, 2_000_000, 4000).await;
    let backup_time = started.elapsed();
    for f in flood {
        f.await.unwrap();
    }
    assert_eq!(
        refused.load(Ordering::Relaxed),
        128,
        "every flooding task ends refused"
    );

    let stored = server.metric("eventi_key_stored_bytes_total{key=\"flooder\"}");
    println!(
        "backup of 4000 x 8 KiB, 16 in flight: idle p50 {:.2} ms p99 {:.2} ms; under flood p50 {:.2} ms p99 {:.2} ms ({:.2} s); flooder stored {} MiB of its {} MiB quota",
        pct(&idle, 0.5),
        pct(&idle, 0.99),
        pct(&under_flood, 0.5),
        pct(&under_flood, 0.99),
        backup_time.as_secs_f64(),
        stored as u64 >> 20,
        FLOOD_QUOTA >> 20
    );
    assert!(
        stored as u64 <= FLOOD_QUOTA,
        "flooder stored {stored} bytes over its quota"
    );
    // Within one block of the quota: the refusals came from the quota.
    assert!(stored as u64 > FLOOD_QUOTA - 56 * 1024);
}

/// The operator's remedy for a key that floods: a rate. The same flood
/// from a key limited to 50 MiB/s, beside the same backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_flood_barely_touches_other_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let flooder = add_key(&data, "flooder", &["--quota", "1GiB", "--rate", "50MiB/s"]);
    let backer = add_key(&data, "backer", &["--quota", "1GiB"]);
    let server = Server::start_strict(&data, &[]);
    let b = connect(&server, &backer).await;
    let idle = backup(&b, 1_000_000, 4000).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = Vec::new();
    for conn in 0..4u64 {
        let c = connect(&server, &flooder).await;
        for t in 0..32u64 {
            let (c, stop) = (c.clone(), Arc::clone(&stop));
            flood.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let block = Bytes::from(pattern((conn << 40) | (t << 32) | i, 56 * 1024));
                    c.write(BlockType::DATA, block)
                        .await
                        .expect("rate-limited flood write");
                    i += 1;
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let under_flood = backup(&b, 2_000_000, 4000).await;
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        f.await.unwrap();
    }
    println!(
        "backup beside a 50 MiB/s-limited flood: idle p50 {:.2} ms p99 {:.2} ms; under flood p50 {:.2} ms p99 {:.2} ms",
        pct(&idle, 0.5),
        pct(&idle, 0.99),
        pct(&under_flood, 0.5),
        pct(&under_flood, 0.99),
    );
    let stored = server.metric("eventi_key_stored_bytes_total{key=\"flooder\"}");
    assert!(stored > 0.0, "the limited flooder still writes");
}

#[tokio::test]
async fn a_rate_limited_key_is_slowed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let slow = add_key(&data, "slow", &["--quota", "1GiB", "--rate", "1MiB/s"]);
    let server = Server::start_strict(&data, &[]);
    let c = connect(&server, &slow).await;
    let started = Instant::now();
    // 3 MiB at 1 MiB/s with a one-second burst: at least ~2 s.
    for i in 0..96u64 {
        c.write(
            BlockType::DATA,
            Bytes::from(pattern(7_000_000 + i, 32 * 1024)),
        )
        .await
        .unwrap();
    }
    c.sync().await.unwrap();
    let took = started.elapsed();
    println!("3 MiB at 1 MiB/s took {:.2} s", took.as_secs_f64());
    assert!(
        took >= Duration::from_millis(1500),
        "rate limit not applied: {took:?}"
    );
}
