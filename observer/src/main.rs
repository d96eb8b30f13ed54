//! zastava-observer CLI (the logic lives in lib.rs): `run` is the node daemon (JSON logs on
//! stdout until SIGTERM); the other commands print JSON on stdout, exit code 0 when all went
//! well, 1 with a message on stderr otherwise.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde::Serialize;
use tracing_subscriber::EnvFilter;
use zastava_observer::daemon::{self, LogFormat};
use zastava_observer::entrytrace;
use zastava_observer::hashing::{
    HashCache, Limits, DEFAULT_MAX_HASH_BYTES_PER_CONTAINER, DEFAULT_MAX_LIBS,
};
use zastava_observer::inspect::inspect_file;
use zastava_observer::sample::{sample, SampleOptions, DEFAULT_MAX_DEPTH};

#[derive(Debug, Parser)]
#[command(
    name = "zastava-observer",
    version,
    about = "What a node's containers really run and load"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The node daemon: inventory the node's containers through the runtime's CRI socket,
    /// sample them, detect drift, and report into their workloads' RuntimePosture status.
    Run(Box<daemon::Config>),
    /// Sample a process: its executable, the code it has mapped (sha256, GNU build-id) and its
    /// entry trace. Arguments are redacted unless --show-args; environment is never read.
    Sample {
        /// The process to sample.
        #[arg(long)]
        pid: u32,
        /// Where the host's procfs is mounted (the DaemonSet mounts it at /host/proc).
        #[arg(long, env = "ZASTAVA_PROC_ROOT", default_value = "/proc")]
        proc_root: PathBuf,
        /// Libraries hashed per process; the others are listed with "capped": "maxLibs".
        #[arg(long, env = "ZASTAVA_MAX_LIBS", default_value_t = DEFAULT_MAX_LIBS)]
        max_libs: usize,
        /// Bytes hashed per process; files that do not fit get "capped": "maxHashBytes".
        #[arg(long, env = "ZASTAVA_MAX_HASH_BYTES", default_value_t = DEFAULT_MAX_HASH_BYTES_PER_CONTAINER)]
        max_hash_bytes: u64,
        /// Shell/wrapper depth of the entry trace.
        #[arg(long, env = "ZASTAVA_MAX_DEPTH", default_value_t = DEFAULT_MAX_DEPTH)]
        max_depth: usize,
        /// Include the command line ("entrypoint") in the output (diagnostic mode: arguments
        /// can hold secrets).
        #[arg(long, env = "ZASTAVA_SHOW_ARGS")]
        show_args: bool,
    },
    /// Print {"path","sha256","buildId","elf"} for each file, one JSON line each.
    Inspect {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Trace an entrypoint inside a root filesystem (nothing is executed).
    Trace {
        /// The container's root filesystem.
        #[arg(long)]
        root: PathBuf,
        /// PATH to resolve bare command names with (default: the standard one).
        #[arg(long)]
        path: Option<String>,
        /// Shell/wrapper depth.
        #[arg(long, env = "ZASTAVA_MAX_DEPTH", default_value_t = DEFAULT_MAX_DEPTH)]
        max_depth: usize,
        /// The entrypoint followed by its command.
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("zastava-observer: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command; `Ok(false)` when it printed its output but something failed.
fn run(cli: Cli) -> Result<bool> {
    match cli.command {
        Command::Run(config) => {
            let filter =
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
            let logs = tracing_subscriber::fmt().with_env_filter(filter);
            match config.log_format {
                LogFormat::Json => logs.json().flatten_event(true).init(),
                LogFormat::Text => logs.init(),
            }
            // The workspace links rustls with both ring and aws-lc-rs: name the process-wide
            // provider so the Kubernetes client does not have to guess.
            let _ = rustls::crypto::ring::default_provider().install_default();
            tokio::runtime::Runtime::new()
                .context("cannot start the async runtime")?
                .block_on(daemon::run(*config))?;
            Ok(true)
        }
        Command::Sample {
            pid,
            proc_root,
            max_libs,
            max_hash_bytes,
            max_depth,
            show_args,
        } => {
            let opts = SampleOptions {
                proc_root,
                limits: Limits {
                    max_libs,
                    max_hash_bytes_per_container: max_hash_bytes,
                },
                entry_trace_depth: Some(max_depth),
                show_args,
            };
            let result = sample(pid, &opts, &HashCache::default())
                .with_context(|| format!("cannot sample pid {pid}"))?;
            print_json(&result)?;
            Ok(true)
        }
        Command::Inspect { files } => {
            let cache = HashCache::default();
            let mut all_ok = true;
            for file in files {
                let report = inspect_file(&file, &cache);
                if !report.is_ok() {
                    all_ok = false;
                }
                print_json(&report)?;
            }
            if !all_ok {
                eprintln!("zastava-observer: some files could not be inspected (see \"error\")");
            }
            Ok(all_ok)
        }
        Command::Trace {
            root,
            path,
            max_depth,
            argv,
        } => {
            let trace = entrytrace::trace(&root, &argv, path.as_deref(), max_depth);
            print_json(&trace)?;
            Ok(true)
        }
    }
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value).context("cannot serialize output")?;
    writeln!(out).context("cannot write to stdout")?;
    out.flush().context("cannot write to stdout")
}
