//! The HTTP endpoint: `/metrics` (Prometheus text) and `/healthz`, read
//! only. Key management is not here: it is the admin socket's
//! (`admin::socket`), which answers the operator alone.
//!
//! Every request must name this server in its `Host` header: the IP
//! address the connection arrived on, `localhost`, or a name the operator
//! allowed (`http_allowed_hosts`). A web page that rebinds its own DNS
//! name to 127.0.0.1 sends its own name, and is refused (DNS rebinding).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::IncomingStream;
use axum::Router;
use tokio::net::TcpListener;

use crate::state::Shared;

/// Both ends of an HTTP connection, for the `Host` check.
#[derive(Clone, Copy, Debug)]
struct Ends {
    local: Option<SocketAddr>,
    remote: SocketAddr,
}

impl Connected<IncomingStream<'_, TcpListener>> for Ends {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Ends {
            local: stream.io().local_addr().ok(),
            remote: *stream.remote_addr(),
        }
    }
}

/// The names, besides the connection's own address and `localhost`, that
/// a request's `Host` may give.
#[derive(Clone, Debug, Default)]
pub struct AllowedHosts(Vec<String>);

impl AllowedHosts {
    /// From the config's `http_allowed_hosts` (compared without case).
    pub fn new(names: &[String]) -> AllowedHosts {
        AllowedHosts(names.iter().map(|n| n.to_ascii_lowercase()).collect())
    }

    /// Whether `host` (a `Host` header value, port optional) names this
    /// server for a connection that arrived on `local`. The port is not
    /// compared: a rebinding page must use the server's own port anyway,
    /// and a proxy in front may use another.
    pub fn permits(&self, host: &str, local: Option<IpAddr>) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        if name == "localhost" || self.0.contains(&name) {
            return true;
        }
        match (name.parse::<IpAddr>(), local) {
            (Ok(ip), Some(local)) => ip == local || v4_mapped(local) == Some(ip),
            _ => false,
        }
    }
}

fn v4_mapped(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(_) => None,
    }
}

/// The name part of a `Host` value: `[::1]:80` gives `::1`, `a:80` gives `a`.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[derive(Clone)]
struct HttpState {
    shared: Arc<Shared>,
    allowed: Arc<AllowedHosts>,
}

/// Serves HTTP on `listener` until `stop` completes.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    allowed: AllowedHosts,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let state = HttpState {
        shared,
        allowed: Arc::new(allowed),
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/healthz/read", get(|| async { "ok\n" }))
        .route("/healthz/write", get(healthz_write))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), check_host))
        .with_state(state)
        .into_make_service_with_connect_info::<Ends>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

/// Refuses requests whose `Host` does not name this server, on every
/// route (including unknown ones, so nothing about the server leaks).
async fn check_host(
    State(state): State<HttpState>,
    ConnectInfo(ends): ConnectInfo<Ends>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let local = ends.local.map(|a| a.ip());
    match host {
        Some(h) if state.allowed.permits(&h, local) => next.run(request).await,
        other => {
            let shown = other.as_deref().unwrap_or("(none)");
            tracing::warn!(peer = %ends.remote, host = shown, "HTTP request with a foreign Host refused");
            state.shared.metrics.http_host_refused.inc();
            (
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "Host {shown:?} does not name this server: use its address or localhost, or add the name to http_allowed_hosts\n"
                ),
            )
                .into_response()
        }
    }
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let shared = state.shared;
    let data = shared.data.clone();
    let exposures = tokio::task::spawn_blocking(move || eventi_store::private::audit(&data).len())
        .await
        .unwrap_or(0);
    shared.metrics.data_dir_exposures.set(exposures as i64);
    if let Some((space, reserve)) = shared.store.space() {
        shared.metrics.disk_free.set(space.free as i64);
        shared.metrics.disk_reserve.set(reserve as i64);
    }
    shared
        .metrics
        .read_only
        .set(i64::from(shared.store.read_only().is_some()));
    if let Ok(c) = shared.store.space_counters() {
        shared.metrics.reclaimable_bytes.set(c.reclaimable as i64);
        shared.metrics.reclaimed_bytes.set(c.reclaimed as i64);
    }
    let body = shared.metrics.render(shared.store.stats());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

/// Room above the reserve under which writes count as refused (1 MiB,
/// the largest block on protocol 04 by default).
const LOW_ROOM: u64 = 1 << 20;

/// Whether new blocks would be refused now, and why.
fn writes_refused(shared: &Shared) -> Option<String> {
    if let Some(why) = shared.store.read_only() {
        return Some(format!("store is read-only: {why}"));
    }
    let (space, reserve) = shared.store.space()?;
    // Blocks are refused one by one as they stop fitting; health says
    // "refused" once less than a large block's worth is left.
    (space.free < reserve + LOW_ROOM).then(|| {
        eventi_store::StoreError::DiskFull {
            free: space.free,
            reserve,
        }
        .to_string()
    })
}

/// `/healthz`: 200 while reads are served (always, while the server
/// runs), saying whether writes are refused and why.
async fn healthz(State(state): State<HttpState>) -> String {
    match writes_refused(&state.shared) {
        None => "ok\n".into(),
        Some(why) => format!("reads: ok\nwrites: refused: {why}\n"),
    }
}

/// `/healthz/write`: 503 while new blocks would be refused, for checks
/// that route writers elsewhere.
async fn healthz_write(State(state): State<HttpState>) -> (StatusCode, String) {
    match writes_refused(&state.shared) {
        None => (StatusCode::OK, "ok\n".into()),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("writes refused: {why}\n"),
        ),
    }
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, "not found\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_split_from_ports() {
        assert_eq!(host_name("127.0.0.1:17035"), "127.0.0.1");
        assert_eq!(host_name("[::1]:80"), "::1");
        assert_eq!(host_name("[::1]"), "::1");
        assert_eq!(host_name("localhost"), "localhost");
        assert_eq!(host_name("evil.example:17035"), "evil.example");
    }

    #[test]
    fn only_own_address_localhost_and_allowed_names_pass() {
        let allowed = AllowedHosts::new(&["Metrics.Internal".to_string()]);
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(allowed.permits("127.0.0.1:17035", Some(lo)));
        assert!(allowed.permits("LOCALHOST:1", Some(lo)));
        assert!(allowed.permits("metrics.internal", Some(lo)));
        assert!(!allowed.permits("evil.example:17035", Some(lo)));
        assert!(!allowed.permits("127.0.0.2:17035", Some(lo)));
        assert!(!allowed.permits("", Some(lo)));
        assert!(!allowed.permits("127.0.0.1", None));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(allowed.permits("127.0.0.1", Some(mapped)));
        let v6: IpAddr = "::1".parse().unwrap();
        assert!(allowed.permits("[::1]:9", Some(v6)));
    }
}
