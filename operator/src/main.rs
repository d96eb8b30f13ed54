use clap::Parser;
use tracing_subscriber::EnvFilter;
use zastava_operator::{Config, LogFormat};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        LogFormat::Json => logs.json().flatten_event(true).init(),
        LogFormat::Text => logs.init(),
    }
    // The workspace links rustls with both ring (kube) and aws-lc-rs (the registry client):
    // name the process-wide provider so the Kubernetes client does not have to guess.
    let _ = rustls::crypto::ring::default_provider().install_default();
    zastava_operator::run(config).await?;
    Ok(())
}
