use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use zastava_crds::contracts::Decision;
use zastava_registry::metrics::RegistryMetrics;
use zastava_registry::Registry;
use zastava_webhook::check::{check, load_policies, load_subject};
use zastava_webhook::LogFormat;

/// mimalloc instead of glibc malloc: a decision allocates on one runtime thread what another
/// frees, and glibc's arena locks made that the largest single cost of a warm decision
/// (`make bench-webhook`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "zastava-webhook", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the admission webhook against the cluster (in-cluster config or KUBECONFIG).
    Serve {
        #[command(flatten)]
        config: zastava_webhook::ServeConfig,
    },
    /// Evaluate ZastavaPolicy documents against a Pod, workload or AdmissionReview and print
    /// the admission decision JSON. Exit 0 when allowed, 1 when denied, 2 on unusable input.
    Check {
        /// YAML file(s) with ZastavaPolicy documents.
        #[arg(long, required = true)]
        policy: Vec<PathBuf>,
        /// The Pod, workload or AdmissionReview (YAML or JSON).
        #[arg(long)]
        object: PathBuf,
        /// Namespace to decide in (default: the object's, else `default`).
        #[arg(long)]
        namespace: Option<String>,
        /// Labels of that namespace, for policies with a namespaceSelector (`key=value`).
        #[arg(long = "namespace-label", value_parser = parse_label)]
        namespace_labels: Vec<(String, String)>,
        /// Zastava's own namespace, which no policy governs.
        #[arg(long, env = "ZASTAVA_NAMESPACE", default_value = "zastava-system")]
        zastava_namespace: String,
        /// Skip registry lookups and name each gate that could not be checked.
        #[arg(long)]
        offline: bool,
        /// Registries (`host:port`) spoken to over plain HTTP, comma-separated.
        #[arg(long, env = "ZASTAVA_INSECURE_REGISTRIES", value_delimiter = ',')]
        insecure_registries: Vec<String>,
    },
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not key=value"))
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve { config } => serve(config),
        Command::Check {
            policy,
            object,
            namespace,
            namespace_labels,
            zastava_namespace,
            offline,
            insecure_registries,
        } => check_command(
            &policy,
            &object,
            namespace,
            namespace_labels,
            &zastava_namespace,
            (!offline).then_some(insecure_registries),
        ),
    }
}

fn serve(config: zastava_webhook::ServeConfig) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    // kube speaks rustls with ring, the registry client with aws-lc-rs: name the process-wide
    // default so neither has to guess.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("zastava-webhook: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(zastava_webhook::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "zastava-webhook stopped");
            ExitCode::FAILURE
        }
    }
}

fn check_command(
    policy: &[PathBuf],
    object: &PathBuf,
    namespace: Option<String>,
    namespace_labels: Vec<(String, String)>,
    zastava_namespace: &str,
    registry: Option<Vec<String>>,
) -> ExitCode {
    match run_check(
        policy,
        object,
        namespace,
        namespace_labels.into_iter().collect(),
        zastava_namespace,
        registry,
    ) {
        Ok(Decision::Allow) => ExitCode::SUCCESS,
        Ok(Decision::Deny) => ExitCode::from(1),
        Err(e) => {
            eprintln!("zastava-webhook check: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_check(
    policy_files: &[PathBuf],
    object_file: &PathBuf,
    namespace: Option<String>,
    labels: BTreeMap<String, String>,
    zastava_namespace: &str,
    registry: Option<Vec<String>>,
) -> anyhow::Result<Decision> {
    let mut policies = Vec::new();
    for file in policy_files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        policies.extend(load_policies(&file.display().to_string(), &text)?);
    }
    let text = std::fs::read_to_string(object_file)
        .map_err(|e| anyhow::anyhow!("{}: {e}", object_file.display()))?;
    let subject = load_subject(&object_file.display().to_string(), &text)?;
    let namespace = namespace
        .or_else(|| subject.namespace.clone())
        .unwrap_or_else(|| "default".to_string());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let offline = if registry.is_none() { " (offline)" } else { "" };
    let registry = registry.map(|insecure| {
        Registry::new(
            insecure,
            std::time::Duration::from_secs(10),
            RegistryMetrics::new(),
        )
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let checked = runtime.block_on(check(
        &policies,
        &subject,
        &namespace,
        &labels,
        zastava_namespace,
        registry.as_ref(),
    ));
    for problem in &checked.problems {
        eprintln!("warning: {problem}");
    }
    let evaluation = checked.evaluation;
    for warning in &evaluation.warnings {
        eprintln!("warning: {warning}");
    }
    for gate in &evaluation.not_checked {
        eprintln!("not checked{offline}: {gate}");
    }
    println!("{}", serde_json::to_string_pretty(&evaluation.decision)?);
    Ok(evaluation.decision.decision)
}
