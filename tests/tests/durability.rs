//! Durability: synced blocks survive kill -9; a torn log tail is cut off;
//! corruption is detected on read and by `verify`; SIGTERM drains.

use std::io::Write;
use std::process::Command;

use bytes::Bytes;
use eventi_shared::{BlockType, ClientError, Score, VentiClient};
use eventi_tests::{binary, Server};

fn block(seed: u64, len: usize) -> Bytes {
    Bytes::from(eventi_tests::pattern(seed, len))
}

async fn write_many(c: &VentiClient, from: u64, n: u64) -> Vec<(Score, Bytes)> {
    let mut tasks = Vec::new();
    for i in from..from + n {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let data = block(i, 512 + (i as usize * 131) % 16000);
            (c.write(BlockType::DATA, data.clone()).await.unwrap(), data)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

async fn check_all(server: &Server, blocks: &[(Score, Bytes)]) {
    let c = VentiClient::connect(server.addr).await.unwrap();
    for (score, data) in blocks {
        let got = c
            .read(*score, BlockType::DATA, 1 << 20)
            .await
            .unwrap_or_else(|e| panic!("{score}: {e}"));
        assert!(got == *data, "{score}: read back different bytes");
    }
}

fn verify(data: &std::path::Path) -> (bool, String) {
    let out = Command::new(binary("eventi-server"))
        .args(["verify", "--data"])
        .arg(data)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

async fn synced_blocks_survive_kill9(engine: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--engine", engine]);
    let c = VentiClient::connect(server.addr).await.unwrap();
    let mut synced = write_many(&c, 0, 2000).await;
    c.sync().await.unwrap();
    // More writes after the sync, some perhaps half-done when killed.
    let c2 = c.clone();
    let unsynced = tokio::spawn(async move { write_many(&c2, 10_000, 500).await });
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    server.kill9();
    let _ = unsynced.await;

    let server = Server::start(&data, &[]);
    check_all(&server, &synced).await;
    let stored = server.metric("eventi_stored_blocks");
    assert!(stored >= 2000.0, "stored_blocks {stored} after restart");
    // New writes still work after recovery, and sync.
    let c = VentiClient::connect(server.addr).await.unwrap();
    synced.extend(write_many(&c, 20_000, 100).await);
    c.sync().await.unwrap();
    let stored = server.metric("eventi_stored_blocks") as u64;
    assert!(server.terminate().success());
    let (ok, report) = verify(&data);
    assert!(ok, "{report}");
    // verify must visit every stored block, not merely find none bad.
    assert!(
        report.contains(&format!("verified {stored} blocks")) && report.contains(" 0 bad"),
        "expected {stored} blocks verified: {report}"
    );
    let server = Server::start(&data, &[]);
    check_all(&server, &synced).await;
}

#[tokio::test]
async fn log_engine_synced_blocks_survive_kill9() {
    synced_blocks_survive_kill9("log").await;
}

#[tokio::test]
async fn blobdb_engine_synced_blocks_survive_kill9() {
    synced_blocks_survive_kill9("blobdb").await;
}

fn last_segment(data: &std::path::Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(data.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    segs.pop().expect("a log segment")
}

#[tokio::test]
async fn torn_tail_is_cut_off_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let c = VentiClient::connect(server.addr).await.unwrap();
    let blocks = write_many(&c, 0, 300).await;
    c.sync().await.unwrap();
    server.kill9();
    // A half-written record: a valid header promising more than is there.
    let seg = last_segment(&data);
    let len_before = std::fs::metadata(&seg).unwrap().len();
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    let mut torn = b"EvB1\x0d\0\0\0\0\0\x10\0".to_vec();
    torn.extend_from_slice(&[0x55; 20]);
    torn.extend_from_slice(&[1; 100]);
    f.write_all(&torn).unwrap();
    drop(f);

    let server = Server::start(&data, &[]);
    check_all(&server, &blocks).await;
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len_before);
    server.wait_for_log("torn write");
    let c = VentiClient::connect(server.addr).await.unwrap();
    let more = write_many(&c, 5000, 10).await;
    c.sync().await.unwrap();
    check_all(&server, &more).await;
}

#[tokio::test]
async fn corruption_is_refused_on_read_and_reported_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let c = VentiClient::connect(server.addr).await.unwrap();
    let victim = block(42, 4000);
    let score = c.write(BlockType::DATA, victim.clone()).await.unwrap();
    let others = write_many(&c, 100, 50).await;
    c.sync().await.unwrap();
    assert!(server.terminate().success());

    // Flip one byte of the victim's data in the log.
    let seg = last_segment(&data);
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes
        .windows(victim.len())
        .position(|w| w == &victim[..])
        .expect("victim in the log");
    bytes[at + 1000] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();

    let (ok, report) = verify(&data);
    assert!(!ok, "verify must fail: {report}");
    assert!(report.contains(&format!("corrupt {score}")), "{report}");
    assert!(report.contains("1 bad"), "{report}");

    let server = Server::start(&data, &[]);
    let c = VentiClient::connect(server.addr).await.unwrap();
    let err = c.read(score, BlockType::DATA, 8192).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Server(m) if m.contains("corrupt")),
        "{err}"
    );
    assert_eq!(server.metric("eventi_corrupt_reads_total"), 1.0);
    check_all(&server, &others).await;
}

#[tokio::test]
async fn sigterm_answers_requests_in_flight_and_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let c = VentiClient::connect(server.addr).await.unwrap();
    let c2 = c.clone();
    let writer = tokio::spawn(async move {
        let mut ok = Vec::new();
        for i in 0..100_000u64 {
            match c2.write(BlockType::DATA, block(i, 8192)).await {
                Ok(s) => ok.push((s, block(i, 8192))),
                Err(_) => break,
            }
        }
        ok
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    let acknowledged = writer.await.unwrap();
    assert!(!acknowledged.is_empty());
    // Every write the server acknowledged is there after restart.
    let server = Server::start(&data, &[]);
    check_all(&server, &acknowledged).await;
    assert!(
        !server.log().contains("re-indexed"),
        "clean shutdown must leave nothing to re-index"
    );
}
