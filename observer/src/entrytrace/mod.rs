//! Entry-point tracing: from a container's entrypoint and command, follow shell scripts and
//! wrappers inside the container's root filesystem — reading them, never executing anything —
//! to the terminal program(s): the programs the container ends up running.
//!
//! The model, in the order a trace meets it:
//!
//! - **Files** are looked up inside `root` only: symlinks are resolved one component at a time
//!   relative to `root` (an absolute `/bin/sh -> /bin/busybox` means `<root>/bin/busybox`), so a
//!   rootfs cannot point the observer at its own files. Terminals are the resolved paths (what
//!   `/proc/<pid>/exe` shows), except busybox applets. Bare names are searched on the
//!   container's `PATH` (which scripts may change). A file is read only up to 256 bytes to tell
//!   an ELF binary from a `#!` script, and a script only when it is at most 1 MiB.
//! - **Programs** are classified by name: shells (`sh -c`, `bash script`) are parsed; wrappers
//!   (`env`, `tini`, `dumb-init`, `catatonit`, `gosu`, `su-exec`, `s6-setuidgid`, `nohup`) are
//!   followed to the command they start; interpreters (`python`, `node`, `java`, `ruby`, `perl`,
//!   `php`) are terminal, with their script, module, jar or class recorded as a step;
//!   `run-parts DIR` follows every file it would run (also where a script runs it as a hook
//!   and moves on: then only what the hooks start in the background are terminals); a path
//!   that resolves to a multi-call
//!   `busybox` is the applet its name says (`/bin/sleep`); anything else is terminal.
//! - **Scripts** are tokenized and parsed by hand (quotes, `\` continuations, `$VAR`,
//!   `${VAR:-default}` and friends, here-documents, `&&`/`||`/`;`/`&`/`|`, `if`/`case`/`for`/
//!   `while`, functions), then interpreted symbolically: variables assigned earlier, `set --`,
//!   `shift` and `"$@"` are known; the container's environment and command substitutions are
//!   not. A condition that can be decided (`[ "$1" = postgres ]` with `$1` known) takes one
//!   branch; one that cannot explores every branch, each with its own copy of the variables, and
//!   all their terminals are recorded (`${VAR:-default}` of a variable the scripts never set
//!   takes the default: the environment is not known here, and the default is what the image
//!   expects). A script ends in the program it `exec`s or, when it never does, in its last
//!   command — and then the shell stays too, waiting for it. `local` variables are scoped to
//!   their function; a script re-running itself (`exec gosu user "$0" "$@"`) is a cycle.
//!
//! Everything is bounded: `max_depth` (programs, scripts, sourced files and function calls
//! nested in each other), steps, warnings, paths explored at once (beyond a cap, paths that
//! differ only in variables are joined, those variables becoming unknown), and a total amount
//! of work.
//! Whatever cannot be followed becomes a warning, never a panic. Arguments can hold secrets:
//! steps and warnings show command words and paths, never argument values.
//!
//! The parts, one file each, in the order a trace uses them: `rootfs` (lookups and reads
//! inside the container root), `programs` (what is known about wrappers, interpreters and file
//! headers), `lexer` and `parser` (a script's text to its syntax tree), then the tracer:
//! `tracer` (its bookkeeping and budgets, and following one program to the next), `interpret`
//! (the shell language run symbolically over the paths of `state`), `builtins`, `expand`
//! (words to fields), `patterns` (shell patterns) and `test_builtin` (`[`, `test`, `[[`).

mod builtins;
mod expand;
mod interpret;
mod lexer;
mod parser;
mod patterns;
mod programs;
mod rootfs;
mod state;
mod test_builtin;
#[cfg(test)]
mod tests;
mod tracer;

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use serde::Serialize;

use self::rootfs::basename;
use self::state::{Env, Field, Loc, Var};
use self::tracer::{Call, Tracer};

/// One step of the trace, as in the runtime event contract `entryTrace[{file,line,op,target}]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct TraceStep {
    /// The file the step was read from (a path inside the container), or `argv` for the
    /// container's own entrypoint/command (and for the commands of an `sh -c` string in it).
    pub file: String,
    /// 1-based line in `file`; for `argv`, 0 — or the line inside an `sh -c` string.
    pub line: u32,
    /// What happened:
    /// - `exec`: a program replaces the process (the entrypoint itself, `exec`, an `sh -c`
    ///   string that is a single command);
    /// - `path-lookup`: a bare name found on `PATH`; `symlink`: what a path resolves to;
    /// - `shebang`: a script's `#!` interpreter; `applet`: `busybox APPLET`;
    /// - `wrapper`: the command `env`/`tini`/`dumb-init`/`gosu`/`su-exec`/... starts;
    /// - `interpreter`: the script, `-m module`, jar or class an interpreter runs (also the
    ///   script a shell runs); `shell-c`: a shell parses a `-c` string;
    /// - `source`: `.`/`source`;
    /// - `branch`: a branch of an `if`/`case` whose condition is not known before the
    ///   container runs (`then`, `elif`, `else`, or the `case` patterns), recorded when the
    ///   branch led to further steps;
    /// - `command`: the last command of a script that never `exec`s (the shell waits for
    ///   it), or `run-parts` run along the way;
    /// - `background`: `cmd &`; `run-parts`: a file `run-parts` runs;
    /// - `cycle`: a script re-run with the same arguments (e.g. by `gosu user "$0" "$@"`),
    ///   not followed again.
    pub op: String,
    /// What it led to (a path inside the container, or a command word when unresolved).
    pub target: String,
}

/// The result of tracing one entrypoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryTrace {
    pub steps: Vec<TraceStep>,
    /// Absolute paths (inside the container) of the program(s) the entrypoint ends in: what
    /// it `exec`s in the end, supervisors that stay as its parent (`tini`, `dumb-init`, a shell
    /// waiting for its last command, `run-parts`), and commands started in the background.
    pub terminals: Vec<String>,
    /// The deepest level followed (programs, scripts, sourced files and function calls):
    /// 0 for an entrypoint that is the program itself.
    pub depth: usize,
    /// True when `max_depth` or another cap cut the trace short (see `warnings`).
    pub truncated: bool,
    /// What could not be followed and why (unreadable file, unresolvable word, ...).
    pub warnings: Vec<String>,
}

/// The `PATH` used when the image does not set one (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Traces `argv` (entrypoint followed by command, as the runtime concatenates them) inside the
/// container root `root`, resolving bare program names against `path` (the image's `PATH`, or
/// [`DEFAULT_PATH`] when `None`).
pub fn trace(root: &Path, argv: &[String], path: Option<&str>, max_depth: usize) -> EntryTrace {
    let mut tracer = Tracer::new(root, max_depth);
    if argv.is_empty() {
        tracer.warn("empty entrypoint and command: nothing to trace".to_string());
        return tracer.out;
    }
    let argv: Vec<Field> = argv.iter().map(|a| Field::known(a.as_str())).collect();
    let env = Env {
        vars: BTreeMap::from([(
            "PATH".to_string(),
            Var::Set(path.unwrap_or(DEFAULT_PATH).to_string()),
        )]),
        cwd: None,
    };
    let at = Loc {
        file: Rc::from(ARGV),
        line: 0,
    };
    tracer.exec_program(&Call {
        at: &at,
        op: "exec",
        argv: &argv,
        env: &env,
        depth: 0,
    });
    tracer.out
}

/// Whether `path` names a multi-call `busybox` binary, which runs the applet its `argv[0]`
/// names: a process whose executable is busybox is the program its name says.
pub fn is_busybox(path: &str) -> bool {
    basename(path) == "busybox"
}

/// The `file` of steps read from the entrypoint and command.
const ARGV: &str = "argv";

/// What execvp(3) searches when `PATH` is unset (glibc's `_CS_PATH`), e.g. after `env -i`.
const UNSET_PATH: &str = "/bin:/usr/bin";
