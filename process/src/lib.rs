//! What every Zastava process has, whichever binary it runs: how it files Kubernetes Events,
//! stops on a signal, serves its probes and renders its metrics. The operator's, the webhook's
//! and the observer's logic stays in their own crates.

pub mod events;
pub mod probes;

/// Resolves on SIGTERM or SIGINT (only SIGINT when SIGTERM cannot be listened for).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops this process");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `registry` in the Prometheus text format.
pub fn render(registry: &prometheus::Registry) -> String {
    let mut out = String::new();
    prometheus::TextEncoder::new()
        .encode_utf8(&registry.gather(), &mut out)
        .expect("text encoding into a String cannot fail");
    out
}
