//! The HTTP endpoint: `/metrics` (Prometheus text) and `/healthz`.

use std::future::Future;
use std::sync::Arc;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::admin::{self, KeyCommand};
use tokio::net::TcpListener;

use crate::conn::Shared;

/// Serves HTTP on `listener` until `stop` completes.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/admin/keys", post(admin_keys))
        .with_state(shared)
        .into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let body = shared.metrics.render(shared.store.stats());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// `POST /admin/keys` with a [`KeyCommand`] as JSON: what `eventi-server
/// keys` sends to a running server. Only from loopback: whoever can reach
/// it can authorize keys.
async fn admin_keys(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(shared): State<Arc<Shared>>,
    Json(cmd): Json<KeyCommand>,
) -> impl IntoResponse {
    if !peer.ip().is_loopback() {
        tracing::warn!(%peer, "admin request from a non-loopback address refused");
        return (
            StatusCode::FORBIDDEN,
            "admin requests are accepted from loopback only\n".to_string(),
        );
    }
    let keys = Arc::clone(&shared.keys);
    let result = tokio::task::spawn_blocking(move || admin::apply(&keys, &cmd)).await;
    match result {
        Ok(Ok(reports)) => (
            StatusCode::OK,
            serde_json::to_string(&reports).expect("reports serialize"),
        ),
        Ok(Err(e)) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}
