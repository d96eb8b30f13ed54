//! Entry-point tracing: from a container's entrypoint and command, follow shell scripts and
//! wrappers inside the container's root filesystem (never executing anything) to the terminal
//! program(s). INTERFACE ONLY — being implemented.

use std::path::Path;

use serde::Serialize;

/// One step of the trace, as in the runtime event contract `entryTrace[{file,line,op,target}]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TraceStep {
    /// The file the step was read from (a path inside the container), or `argv` for the
    /// container's own entrypoint/command.
    pub file: String,
    /// 1-based line in `file` (0 for `argv`).
    pub line: u32,
    /// What happened: `exec`, `source`, `wrapper`, `interpreter`, `path-lookup`, `run-parts`, ...
    pub op: String,
    /// What it led to (a path inside the container, or a command word when unresolved).
    pub target: String,
}

/// The result of tracing one entrypoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryTrace {
    pub steps: Vec<TraceStep>,
    /// Absolute paths (inside the container) of the program(s) the entrypoint ends in.
    pub terminals: Vec<String>,
    /// True when `max_depth` cut the trace short.
    pub truncated: bool,
    /// What could not be followed and why (unreadable file, unresolvable word, ...).
    pub warnings: Vec<String>,
}

/// Traces `argv` (entrypoint followed by command, as the runtime concatenates them) inside the
/// container root `root`, resolving bare program names against `path` (the image's `PATH`, or
/// the default `/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin` when `None`).
pub fn trace(root: &Path, argv: &[String], path: Option<&str>, max_depth: usize) -> EntryTrace {
    let _ = (root, argv, path, max_depth);
    EntryTrace::default()
}
