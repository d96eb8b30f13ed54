//! `/metrics`, `/healthz` and `/readyz` on a plain-HTTP port.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::metrics::Metrics;

#[derive(Clone)]
pub struct Probes {
    pub metrics: Metrics,
    /// Set once the API server answered and the CRDs are served.
    pub ready: Arc<AtomicBool>,
}

pub fn router(probes: Probes) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(probes)
}

async fn metrics(State(probes): State<Probes>) -> ([(&'static str, &'static str); 1], String) {
    (
        [("content-type", "text/plain; version=0.0.4")],
        probes.metrics.render(),
    )
}

async fn readyz(State(probes): State<Probes>) -> (StatusCode, &'static str) {
    if probes.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: API server or CRDs not reachable yet",
        )
    }
}

/// Serves the probes until `shutdown` turns true.
pub async fn serve(
    addr: SocketAddr,
    probes: Probes,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    axum::serve(listener, router(probes))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}
