//! `eventi-server bench`: drive a venti server over the network with N
//! connections x M requests in flight, writing new blocks (ending with a
//! Tsync) and then reading them back, and print throughput, latency
//! percentiles and, given the server's pid, its CPU time and memory.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use eventi_shared::client::{ClientOptions, ServerKey};
use eventi_shared::size::parse_size;
use eventi_shared::{BlockType, Score, VentiClient};
use hdrhistogram::Histogram;
use rand::RngCore;

/// Load shape.
#[derive(clap::Args, Clone)]
pub struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:17034")]
    addr: String,
    /// Connections.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 64)]
    depth: usize,
    /// Block size, e.g. 8192 or 8KiB.
    #[arg(long, default_value = "8KiB", value_parser = parse_size)]
    block_size: u64,
    /// Total bytes to write (then read), e.g. 2GiB.
    #[arg(long, default_value = "2GiB", value_parser = parse_size)]
    total: u64,
    /// Phases to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "write,read")]
    phases: Vec<Phase>,
    /// Versions to offer, e.g. "02" to force protocol 02.
    #[arg(long, default_value = "04:02")]
    offer: String,
    /// Pid of the server, to report its CPU time and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Worker threads of the bench's own runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Run every connection as an encrypted session (Noise; the server
    /// must be an eventi-server), to compare with plain venti.
    #[arg(long)]
    encrypt: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Phase {
    Write,
    Read,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.block_size >= 16,
        "--block-size must be at least 16 bytes"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(bench(args))?;
    Ok(ExitCode::SUCCESS)
}

struct Plan {
    block_size: usize,
    count: usize,
    run_id: u64,
    pool: Bytes,
}

impl Plan {
    /// Block `i`: a window of random bytes stamped with the run and index,
    /// so every block of every run is new to the server.
    fn block(&self, i: usize) -> Bytes {
        let span = self.pool.len() - self.block_size;
        let start = (i.wrapping_mul(4099)) % span.max(1);
        let mut b = BytesMut::with_capacity(self.block_size);
        b.put_u64(self.run_id);
        b.put_u64(i as u64);
        b.extend_from_slice(&self.pool[start + 16..start + self.block_size]);
        b.freeze()
    }
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let block_size = args.block_size as usize;
    let count = (args.total / args.block_size) as usize;
    let mut pool = vec![0u8; (4 << 20) + block_size];
    rand::rng().fill_bytes(&mut pool);
    let plan = Arc::new(Plan {
        block_size,
        count,
        run_id: rand::random(),
        pool: Bytes::from(pool),
    });
    let options = ClientOptions {
        offer: args.offer.clone(),
        server_key: if args.encrypt {
            ServerKey::Learn
        } else {
            ServerKey::Plain
        },
        ..ClientOptions::default()
    };
    let mut clients = Vec::new();
    for _ in 0..args.connections {
        clients.push(
            VentiClient::connect_with(args.addr.as_str(), options.clone())
                .await
                .with_context(|| format!("connecting to {}", args.addr))?,
        );
    }
    if args.encrypt && clients[0].encrypted().is_none() {
        anyhow::bail!("{} is not an eventi-server: --encrypt needs one", args.addr);
    }
    println!(
        "bench: {} connection(s) x {} in flight, protocol {}{}, {} blocks of {} B ({:.2} GiB)",
        args.connections,
        args.depth,
        clients[0].version().as_str(),
        if args.encrypt { ", encrypted" } else { "" },
        count,
        block_size,
        (count * block_size) as f64 / (1u64 << 30) as f64
    );
    let mut scores: Arc<Vec<Score>> = Arc::new(Vec::new());
    for phase in &args.phases {
        let before = args.server_pid.and_then(server_cpu);
        let started = Instant::now();
        let (hist, done) = match phase {
            Phase::Write => {
                let (hist, written) = write_phase(&clients, &plan, args.depth).await?;
                scores = Arc::new(written);
                (hist, count)
            }
            Phase::Read => {
                anyhow::ensure!(
                    !scores.is_empty(),
                    "the read phase needs a write phase before it"
                );
                (
                    read_phase(&clients, &scores, args.depth, block_size as u32).await?,
                    scores.len(),
                )
            }
        };
        let secs = started.elapsed().as_secs_f64();
        report(phase, done, block_size, secs, &hist);
        if let Some(pid) = args.server_pid {
            if let (Some(b), Some(a)) = (before, server_cpu(pid)) {
                let cpu = a - b;
                let gib = (done * block_size) as f64 / (1u64 << 30) as f64;
                println!(
                    "  server cpu {:.2} s ({:.2} s/GiB), rss {} MB, peak rss {} MB",
                    cpu,
                    cpu / gib,
                    proc_status_kb(pid, "VmRSS:").unwrap_or(0) / 1024,
                    proc_status_kb(pid, "VmHWM:").unwrap_or(0) / 1024
                );
            }
        }
    }
    Ok(())
}

async fn write_phase(
    clients: &[VentiClient],
    plan: &Arc<Plan>,
    depth: usize,
) -> anyhow::Result<(Histogram<u64>, Vec<Score>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client in clients {
        for _ in 0..depth {
            let (client, plan, next) = (client.clone(), Arc::clone(plan), Arc::clone(&next));
            tasks.push(tokio::spawn(async move {
                let mut hist = new_hist();
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= plan.count {
                        break;
                    }
                    let block = plan.block(i);
                    let t = Instant::now();
                    let score = client.write(BlockType::DATA, block).await?;
                    hist.saturating_record(t.elapsed().as_micros() as u64);
                    mine.push((i, score));
                }
                anyhow::Ok((hist, mine))
            }));
        }
    }
    let mut hist = new_hist();
    let mut scores = vec![Score::ZERO; plan.count];
    for t in tasks {
        let (h, mine) = t.await??;
        hist.add(h).expect("same bounds");
        for (i, s) in mine {
            scores[i] = s;
        }
    }
    // The write is done only when it is durable.
    for client in clients {
        let t = Instant::now();
        client.sync().await?;
        hist.saturating_record(t.elapsed().as_micros() as u64);
    }
    Ok((hist, scores))
}

async fn read_phase(
    clients: &[VentiClient],
    scores: &Arc<Vec<Score>>,
    depth: usize,
    max: u32,
) -> anyhow::Result<Histogram<u64>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client in clients {
        for _ in 0..depth {
            let (client, scores, next) = (client.clone(), Arc::clone(scores), Arc::clone(&next));
            tasks.push(tokio::spawn(async move {
                let mut hist = new_hist();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= scores.len() {
                        break;
                    }
                    let t = Instant::now();
                    client.read(scores[i], BlockType::DATA, max).await?;
                    hist.saturating_record(t.elapsed().as_micros() as u64);
                }
                anyhow::Ok(hist)
            }));
        }
    }
    let mut hist = new_hist();
    for t in tasks {
        hist.add(t.await??).expect("same bounds");
    }
    Ok(hist)
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn report(phase: &Phase, n: usize, block_size: usize, secs: f64, h: &Histogram<u64>) {
    let bytes = (n * block_size) as f64;
    let ms = |q: f64| Duration::from_micros(h.value_at_quantile(q)).as_secs_f64() * 1e3;
    println!(
        "{:<5} {:>8} blocks in {:>6.2} s: {:>7.1} MB/s {:>7.1} MiB/s {:>8.0} ops/s | latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
        format!("{phase:?}").to_lowercase(),
        n,
        secs,
        bytes / secs / 1e6,
        bytes / secs / (1 << 20) as f64,
        n as f64 / secs,
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1e3
    );
}

/// utime + stime of a process in seconds (from /proc/PID/stat), including
/// threads that have exited.
fn server_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name, which may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks)
}

fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
