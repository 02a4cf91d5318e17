//! The background compaction thread: a pass after every prune commit and
//! every `prune.compact_interval_secs`, when the store has dead bytes, at
//! the configured rate so that serving stays responsive. Stopped (between
//! two steps) before the store shuts down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use eventi_store::compact::CompactOptions;
use eventi_store::Store;
use prometheus_client::metrics::counter::Counter;

/// See the module documentation.
pub struct Compactor {
    wake: Mutex<Option<mpsc::Sender<()>>>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Compactor {
    /// No background compaction (`compact_interval_secs = 0`): space comes
    /// back only through `eventi-server compact` on the stopped server.
    pub fn disabled() -> Compactor {
        Compactor {
            wake: Mutex::new(None),
            stop: Arc::new(AtomicBool::new(true)),
            thread: Mutex::new(None),
        }
    }

    /// Starts the thread.
    pub fn start(
        store: Store,
        mut options: CompactOptions,
        interval: Duration,
        passes: Counter,
    ) -> Compactor {
        let stop = Arc::new(AtomicBool::new(false));
        options.stop = Some(Arc::clone(&stop));
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("compactor".into())
            .spawn(move || run(store, options, interval, rx, passes))
            .expect("spawning the compactor thread");
        Compactor {
            wake: Mutex::new(Some(tx)),
            stop,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Asks for a pass soon (a prune just committed).
    pub fn wake(&self) {
        if let Some(tx) = self.wake.lock().expect("compactor lock").as_ref() {
            let _ = tx.send(());
        }
    }

    /// Stops the pass in progress at its next step and ends the thread.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.lock().expect("compactor lock").take();
        if let Some(t) = self.thread.lock().expect("compactor lock").take() {
            let _ = t.join();
        }
    }
}

fn run(
    store: Store,
    options: CompactOptions,
    interval: Duration,
    rx: mpsc::Receiver<()>,
    passes: Counter,
) {
    // What a pass left: the parts of dead records that share a filesystem
    // block with live ones. Only more than that calls for another pass.
    let mut left = 0;
    loop {
        match rx.recv_timeout(interval) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if options.stopped() {
            return;
        }
        let dead = store.space_counters().map_or(0, |c| c.reclaimable);
        // A shared store's pass also closes the folders of front-ends
        // gone for good, and another front-end's prune may have left the
        // dead space: it runs every interval.
        if dead <= left && !store.shares_records() {
            continue;
        }
        match store.compact(&options) {
            Ok(r) if r.removed + r.punched > 0 => tracing::info!(
                segments = r.removed,
                punched = r.punched,
                copied = r.bytes_copied,
                freed = r.bytes_freed,
                "compaction pass"
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "compaction failed; the next pass tries again"),
        }
        left = store.space_counters().map_or(0, |c| c.reclaimable);
        passes.inc();
    }
}
