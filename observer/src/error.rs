//! The observer's error type (one `thiserror` enum for the crate; `anyhow` only in main.rs).

use std::io;
use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// The process does not exist (never did, or exited and was reaped).
    #[error("no such process: pid {pid} (no {path})")]
    NoSuchProcess { pid: u32, path: PathBuf },
    /// The process exited and is a zombie waiting to be reaped: nothing left to sample.
    #[error("process {pid} has exited (zombie, not yet reaped): no such process to sample")]
    ProcessExited { pid: u32 },
    /// Reading a file failed. (The cause is part of the message, not a `source()`, so
    /// warnings made with `to_string()` are complete and `{:#}` does not repeat it.)
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: io::Error },
    /// A file is not something that can be read as a whole (a directory, device, FIFO, ...).
    #[error("{}: not a regular file", path.display())]
    NotRegularFile { path: PathBuf },
    /// The file starts like an ELF file but its headers are cut short or inconsistent.
    #[error("malformed ELF file: {0}")]
    MalformedElf(String),
    /// A `/proc` file that did not parse.
    #[error("{}: cannot parse: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
    /// The container runtime's CRI socket does not answer.
    #[error("cannot connect to the CRI socket {}: {cause}", socket.display())]
    CriConnect { socket: PathBuf, cause: String },
    /// A CRI call failed.
    #[error("CRI {method} on {}: {cause}", socket.display())]
    Cri {
        socket: PathBuf,
        method: &'static str,
        cause: String,
    },
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A runtime event the outbox cannot queue: not one line of JSON.
    #[error("runtime event not queued: {reason}")]
    InvalidEvent { reason: String },
    /// A runtime event larger than the whole outbox queue may hold.
    #[error("runtime event of {bytes} bytes not queued: the queue holds at most {max} bytes")]
    EventTooLarge { bytes: u64, max: u64 },
    /// Outbox settings that cannot work (a cap of zero, no token rate, a bad backend URL).
    #[error("invalid outbox configuration: {0}")]
    OutboxConfig(String),
    /// The HTTP client to the backend cannot be built.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    /// Work run off the daemon's loop did not end within its time limit.
    #[error("{what}: not done within {limit:?}")]
    TimedOut {
        what: String,
        limit: std::time::Duration,
    },
    /// The probe/metrics port cannot be bound.
    #[error("cannot listen on {addr}: {cause}")]
    Listen {
        addr: std::net::SocketAddr,
        cause: io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause: source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
