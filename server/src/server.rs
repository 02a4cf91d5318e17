//! The accept loop: a connection limit, one task per connection, and
//! graceful shutdown (stop accepting, let requests in flight finish, sync).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::conn;
use crate::shutdown;
use crate::state::Shared;

/// Serves venti on `listener` until `stop` completes, then drains.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: impl Future<Output = ()>) {
    let (trigger, _) = shutdown::channel();
    let slots = Arc::new(Semaphore::new(shared.limits.max_connections));
    let per_address: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let mut conns = JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    shared.metrics.connections_refused.inc();
                    tracing::warn!(%peer, limit = shared.limits.max_connections, "connection limit reached; closing");
                    drop(stream);
                    continue;
                };
                let Some(address_slot) = AddressSlot::take(&per_address, peer.ip(), shared.limits.max_connections_per_address) else {
                    shared.metrics.connections_refused.inc();
                    tracing::warn!(%peer, limit = shared.limits.max_connections_per_address, "per-address connection limit reached; closing");
                    drop(stream);
                    continue;
                };
                shared.metrics.connections_accepted.inc();
                let shared = Arc::clone(&shared);
                let rx = trigger.handle();
                conns.spawn(async move {
                    conn::serve(stream, peer, shared, rx).await;
                    drop(address_slot);
                    drop(slot);
                });
            }
        }
    }
    tracing::info!(
        connections = conns.len(),
        "shutting down: finishing requests in flight"
    );
    drop(listener);
    trigger.fire();
    let grace = Duration::from_secs(shared.limits.shutdown_grace_secs + 2);
    if tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!(
            left = conns.len(),
            "connections still open after the grace period; closing them"
        );
        conns.abort_all();
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this
/// is called, not when the future is first polled, so a signal that comes
/// right after the listening line is caught (call it before printing it).
/// Call from within the runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}

/// Binds the venti listener, naming the address if it fails.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))
}

/// One connection's share of its remote address's limit, given back on drop.
struct AddressSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl AddressSlot {
    fn take(
        counts: &Arc<Mutex<HashMap<IpAddr, usize>>>,
        ip: IpAddr,
        limit: usize,
    ) -> Option<AddressSlot> {
        let mut map = counts.lock().expect("address counts");
        let n = map.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            counts: Arc::clone(counts),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().expect("address counts");
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}
