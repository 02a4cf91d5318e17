//! Progress of a long command: shared counters, and a reporter thread
//! that shows them as a bar on a terminal, as JSON lines with `--json`,
//! or not at all when output is piped.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counters updated by the workers.
#[derive(Debug, Default)]
pub struct Counters {
    /// Entries found so far (the walk runs ahead of the work).
    pub files_seen: AtomicU64,
    /// Bytes of files found so far.
    pub bytes_seen: AtomicU64,
    /// Files finished.
    pub files_done: AtomicU64,
    /// Bytes finished (read, or known unchanged).
    pub bytes_done: AtomicU64,
    /// Entries that failed.
    pub errors: AtomicU64,
    /// Files counted by a look-ahead over the whole tree (0 if none runs):
    /// what the ETA is computed against.
    pub files_total: AtomicU64,
    /// Their bytes.
    pub bytes_total: AtomicU64,
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// A bar on stderr.
    Bar,
    /// One JSON object per second on stdout.
    Json,
    /// Nothing.
    Quiet,
}

impl Style {
    /// A bar when stderr is a terminal, JSON if asked for, else nothing.
    pub fn choose(json: bool) -> Style {
        if json {
            Style::Json
        } else if std::io::stderr().is_terminal() {
            Style::Bar
        } else {
            Style::Quiet
        }
    }
}

/// A running reporter; stop it with [`Reporter::finish`].
pub struct Reporter {
    json: bool,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    bar: Option<indicatif::ProgressBar>,
}

impl Reporter {
    /// Starts showing `counters` in `style`; `verb` names the work.
    pub fn start(counters: Arc<Counters>, style: Style, verb: &'static str) -> Reporter {
        let stop = Arc::new(AtomicBool::new(false));
        let bar = (style == Style::Bar).then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .expect("template")
                .progress_chars("=> "),
            );
            bar
        });
        let thread = (style != Style::Quiet).then(|| {
            let stop = Arc::clone(&stop);
            let bar = bar.clone();
            let started = Instant::now();
            // Shows at once, then every step, and once more after `stop`, so
            // a JSON reader always sees at least one event and the final
            // counts.
            std::thread::spawn(move || loop {
                let stopping = stop.load(Relaxed);
                {
                    let c = &counters;
                    let (files, seen, bytes, total) = (
                        c.files_done.load(Relaxed),
                        c.files_seen.load(Relaxed).max(c.files_total.load(Relaxed)),
                        c.bytes_done.load(Relaxed),
                        c.bytes_seen.load(Relaxed).max(c.bytes_total.load(Relaxed)),
                    );
                    match &bar {
                        Some(bar) => {
                            bar.set_length(total.max(bytes));
                            bar.set_position(bytes);
                            bar.set_message(format!("{verb} {files}/{seen} files"));
                        }
                        None => println!(
                            "{}",
                            serde_json::json!({
                                "event": "progress",
                                "seconds": started.elapsed().as_secs_f64(),
                                "files_done": files,
                                "files_total": seen,
                                "bytes_done": bytes,
                                "bytes_total": total,
                                "errors": c.errors.load(Relaxed),
                            })
                        ),
                    }
                }
                if stopping {
                    return;
                }
                let step = if bar.is_some() {
                    100
                } else {
                    json_interval_ms()
                };
                for _ in 0..step / 50 {
                    if stop.load(Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        });
        Reporter {
            json: style == Style::Json,
            stop,
            thread,
            bar,
        }
    }

    /// Stops reporting and clears the bar.
    pub fn finish(mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Reports a problem with one path: a JSON event (`event` names it)
    /// with `--json`, else a line on stderr that does not garble the bar.
    pub fn problem(&self, event: &str, path: &std::path::Path, what: &str) {
        if self.json {
            println!(
                "{}",
                serde_json::json!({"event": event, "path": path.to_string_lossy(), "message": what})
            );
            return;
        }
        let line = format!("eventi: {}: {what}", path.display());
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

/// Milliseconds between `--json` progress events: one second, or
/// `$EVENTI_PROGRESS_INTERVAL_MS` (at least 50) for wrappers that want
/// them more often.
fn json_interval_ms() -> u64 {
    std::env::var("EVENTI_PROGRESS_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(1000, |ms| ms.max(50))
}
