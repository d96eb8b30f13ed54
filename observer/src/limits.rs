//! Every cap and budget of the observer, in one place.
//!
//! What the observer reads comes from workloads it does not trust: their files and scripts
//! (through [`crate::confined`]), and the `/proc` entries of their processes, which a process
//! shapes (65 530 mappings with 4 000-character paths, thousands of sockets, a script that
//! expands billions of words). Each read of such bytes stops at a cap *while it streams*
//! (never trusting a size announced beforehand), each computation over them has a budget,
//! and whatever a cap hides is said: a sample or observation becomes `partial`, a trace
//! `truncated`, with a warning naming the cap (and `zastava_observer_caps_reached_total{cap}`
//! in the daemon), never silently less.
//!
//! The per-container hashing caps an operator sets (`--max-libs`, `--max-hash-bytes`) are
//! [`crate::hashing::Limits`]; their defaults are here.

use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Container roots (crate::confined)
// ---------------------------------------------------------------------------------------------

/// Symbolic links followed while resolving one path (the kernel's `ELOOP` limit).
pub const MAX_SYMLINK_HOPS: usize = 40;
/// Path components one resolution walks through, symlink targets included: bounds the
/// directories a walk holds open.
pub const MAX_WALK_COMPONENTS: usize = 4096;

// ---------------------------------------------------------------------------------------------
// Sampling a process (crate::sample, crate::maps, crate::hashing)
// ---------------------------------------------------------------------------------------------

/// Default of files (loaded libraries) hashed per container (`collect.maxLibs`).
pub const DEFAULT_MAX_LIBS: usize = 256;
/// Default of bytes hashed per container (`collect.maxHashBytesPerContainer`).
pub const DEFAULT_MAX_HASH_BYTES_PER_CONTAINER: u64 = 64_000_000;
/// Bytes of `/proc/<pid>/maps` read. A large real process (a JVM, a browser) has a few
/// thousand mappings of ~100 bytes; a hostile one can make 65 530 of 4 KiB (262 MB).
pub const MAX_MAPS_BYTES: u64 = 8 << 20;
/// Lines of `/proc/<pid>/maps` read (`vm.max_map_count` is 65 530 by default).
pub const MAX_MAPS_LINES: usize = 32_768;
/// A maps line longer than this is skipped (and said): a path is at most `PATH_MAX` (4 KiB),
/// which the kernel's escaping of `\n` as `\012` can make up to four times longer.
pub const MAX_MAPS_LINE_BYTES: usize = 16 << 10;
/// Bytes of `/proc/<pid>/cmdline` read (the argument vector can be megabytes).
pub const MAX_CMDLINE_BYTES: u64 = 128 << 10;
/// Warnings one sample keeps (each can name a 4 KiB path); the rest are counted in one more.
pub const MAX_SAMPLE_WARNINGS: usize = 64;
/// Wall time one sample may take: checked between files (each file is bounded by the
/// hashing caps); the files not reached are listed unhashed and the sample is partial.
pub const SAMPLE_WALL_TIME: Duration = Duration::from_secs(10);
/// Threads that may hash the files of one sample at once (the sampling thread included). The
/// work is the same whatever the width (each file read once), only spread: a node agent needs
/// no more than a few cores for a moment, whatever the machine has.
pub const MAX_HASH_THREADS: usize = 4;

/// Default width of a sample's hashing: the cores this process may run on, at most
/// [`MAX_HASH_THREADS`] (1 where that cannot be told).
pub fn default_hash_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, MAX_HASH_THREADS)
}

// ---------------------------------------------------------------------------------------------
// The entry trace (crate::entrytrace)
// ---------------------------------------------------------------------------------------------

/// Work units one trace may spend: one per command interpreted and per program followed,
/// one per word expanded and per field a word expands into (a `for` list of 169 000 words
/// costs 338 000), and for hashing paths and matching patterns one per
/// [`TRACE_HASH_BYTES_PER_UNIT`] / [`TRACE_GLOB_STEPS_PER_UNIT`]. Real entrypoints (the
/// corpus in `tests/fixtures/entrytrace`) spend a few thousand.
pub const TRACE_WORK_UNITS: usize = 1_000_000;
/// Wall time one trace may take, checked as it spends work.
pub const TRACE_WALL_TIME: Duration = Duration::from_secs(5);
/// Bytes hashed (to dedupe paths through a script) per work unit.
pub const TRACE_HASH_BYTES_PER_UNIT: usize = 8 * 1024;
/// Steps of pattern matching per work unit.
pub const TRACE_GLOB_STEPS_PER_UNIT: usize = 10_000;
/// Scripts larger than this are not read (entrypoint scripts are a few KiB).
pub const MAX_SCRIPT_BYTES: u64 = 1 << 20;
/// Longer values (of variables, words, arguments) are taken as unknown: no path or command
/// word is that long (`PATH_MAX`), and it bounds what each path through a script holds.
pub const MAX_VALUE_BYTES: usize = 4096;
/// What the kernel reads to find a `#!` line (`BINPRM_BUF_SIZE`).
pub const HEADER_BYTES: u64 = 256;
/// Steps one trace lists.
pub const MAX_TRACE_STEPS: usize = 1024;
/// Warnings one trace lists.
pub const MAX_TRACE_WARNINGS: usize = 128;
/// Paths through a script explored at once (each undecidable condition doubles them); beyond
/// this, paths that differ only in variables are joined, and only then are paths dropped.
pub const MAX_TRACE_STATES: usize = 32;
/// Nesting of compound commands (and of `${...}` inside `${...}`) the parser accepts, so a
/// hostile script cannot exhaust the stack.
pub const MAX_SCRIPT_NESTING: usize = 100;
/// Files of a `run-parts` directory followed.
pub const MAX_RUN_PARTS: usize = 64;
/// Entries of a `run-parts` directory read (they are sorted before `MAX_RUN_PARTS` apply).
pub const MAX_DIR_ENTRIES: usize = 4096;
/// A `for` loop over a known list runs its body once per item up to this many items.
pub const MAX_LOOP_ITEMS: usize = 32;
/// Default nesting of programs, scripts, sourced files and function calls followed
/// (`collect.maxDepth`).
pub const DEFAULT_MAX_DEPTH: usize = 48;

// ---------------------------------------------------------------------------------------------
// Observing a container for drift (crate::daemon::observe)
// ---------------------------------------------------------------------------------------------

/// Entries of a writable layer visited per observation.
pub const MAX_UPPER_ENTRIES: usize = 10_000;
/// Directory depth followed in a writable layer.
pub const MAX_UPPER_DEPTH: usize = 32;
/// Open files looked at per process (for socket inodes).
pub const MAX_FDS: usize = 4096;
/// Bytes of `cmdline` read for `argv[0]` (a path is at most `PATH_MAX`).
pub const MAX_ARGV0_BYTES: u64 = 4096;
/// Bytes of one `/proc/<pid>/net/{tcp,tcp6,udp,udp6}` table read (~150 bytes a socket).
pub const MAX_NET_BYTES: u64 = 4 << 20;
/// Entries (sockets) of one `/proc/<pid>/net/*` table parsed.
pub const MAX_NET_ENTRIES: usize = 16_384;
/// Bytes of `/proc/<pid>/mountinfo` read looking for the root mount (a container with its
/// own mount namespace can make thousands of mounts).
pub const MAX_MOUNTINFO_BYTES: u64 = 1 << 20;
/// Bytes of `/proc/<pid>/cgroup` read (one line per hierarchy; cgroup v2 has one).
pub const MAX_CGROUP_BYTES: u64 = 4096;

// ---------------------------------------------------------------------------------------------
// The daemon (crate::daemon)
// ---------------------------------------------------------------------------------------------

/// How long the daemon's loop waits for one container's sample and trace, or observation,
/// run off the loop (`spawn_blocking`). Past it the container is reported without them
/// (`result="timeout"`); the work itself ends by its own budgets above.
pub const CONTAINER_TIME_LIMIT: Duration = Duration::from_secs(30);
