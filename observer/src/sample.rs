//! One sample of a process: its executable and the code files it has mapped, hashed and
//! build-id'd as they are inside the process's own root, plus (optionally) its entry trace.
//!
//! Files are read through `<proc>/<pid>/root/<path>`, opened with [`confined::Root`] (the
//! path is resolved inside the process's root, whatever its symlinks say, and only a regular
//! file is read) so a container's own files are the ones hashed; the opened file must have
//! the device and inode the maps line names (anything else — a file replaced since, one of
//! another filesystem with the same inode number — is not that file), otherwise
//! `<proc>/<pid>/map_files/<range>` is tried (it needs `CAP_SYS_ADMIN`). What is read of
//! `/proc` is capped as it streams, and a sample has a wall-time budget
//! ([`crate::limits`]): past a cap the sample is `partial`, with a warning naming the cap. The
//! executable is opened through `<proc>/<pid>/exe`. Nothing from the process is executed; its
//! environment is never read; its arguments are only reported when asked.
//!
//! The files are opened, build-id'd and charged against the caps on the sampling thread, in
//! the order of the maps, so which files are hashed is decided as if they were hashed one by
//! one; the hashing of those the cache does not know yet is spread over
//! [`HashCache::hash_threads`] threads ([`crate::hashing::hash_pool`]) while the sampling
//! thread goes on (and traces the entrypoint). The warnings are listed in that same order.
//! One difference with hashing one by one: a file whose read fails after it was opened makes
//! the sample look at the process only once every file was opened, not before the next one.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use procfs::FromRead;
use serde::Serialize;

use crate::confined::{self, Root};
use crate::entrytrace::{self, EntryTrace};
use crate::error::{Error, Result};
use crate::hashing::{
    hash_pool, open_regular, Budget, Capped, HashCache, HashPool, Hashed, Limits,
};
use crate::limits::{MAX_CMDLINE_BYTES, MAX_SAMPLE_WARNINGS, SAMPLE_WALL_TIME};
use crate::maps::{self, FileKind, MappedFile, MapsCaps};

/// Default shell/wrapper depth of the entry trace (`collect.maxDepth`).
pub use crate::limits::DEFAULT_MAX_DEPTH;

/// Where the host's procfs is mounted by default.
pub const DEFAULT_PROC_ROOT: &str = "/proc";

/// What to sample and how much.
#[derive(Clone, Debug)]
pub struct SampleOptions {
    /// Mount point of the host's procfs (`/proc`; the DaemonSet mounts it at `/host/proc`).
    pub proc_root: PathBuf,
    pub limits: Limits,
    /// Trace the entrypoint (from `cmdline`) to this depth; `None` skips the trace.
    pub entry_trace_depth: Option<usize>,
    /// Report the command line (`entrypoint`). Off by default: arguments can hold secrets.
    pub show_args: bool,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            proc_root: PathBuf::from(DEFAULT_PROC_ROOT),
            limits: Limits::default(),
            entry_trace_depth: Some(DEFAULT_MAX_DEPTH),
            show_args: false,
        }
    }
}

/// The process's executable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Executable {
    /// Path inside the process's root, without ` (deleted)`.
    pub path: String,
    pub sha256: Option<String>,
    pub build_id: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capped: Option<Capped>,
}

/// A file with executable mappings other than the executable: a shared library, a plugin, a
/// memfd holding code (`/memfd:<name>`). `loadedLibs[{path,inode,sha256}]` of the runtime
/// event contract, plus `buildId`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadedLib {
    pub path: String,
    pub inode: u64,
    pub sha256: Option<String>,
    pub build_id: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// Listed without a hash because a cap was reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capped: Option<Capped>,
}

/// One sample of one process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessSample {
    pub pid: u32,
    /// `None` for kernel threads, or when it could not be read (see `warnings`).
    pub executable: Option<Executable>,
    pub loaded_libs: Vec<LoadedLib>,
    /// The command line; only with `show_args`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_trace: Option<EntryTrace>,
    /// Bytes charged against `max_hash_bytes_per_container` (cached or not).
    pub hashed_bytes: u64,
    /// The process exited (or its pid was reused) while it was sampled, twice, or a cap
    /// ([`crate::limits`]: maps size, command line, wall time) left something unread: what
    /// is here is what was read (`warnings` says which).
    pub partial: bool,
    pub warnings: Vec<String>,
}

/// Samples process `pid`. A process that goes away mid-sample is sampled once more; if it
/// is gone again, what the first attempt read is returned with `partial: true`.
///
/// Errors: [`Error::NoSuchProcess`] / [`Error::ProcessExited`] when there is nothing to
/// sample, [`Error::Io`] when the maps cannot be read (e.g. no ptrace access), [`Error::Parse`]
/// for an unreadable `stat`.
pub fn sample(pid: u32, opts: &SampleOptions, cache: &HashCache) -> Result<ProcessSample> {
    let first = Sampler::new(pid, opts, cache).run()?;
    if !first.vanished {
        return Ok(first.sample);
    }
    let mut result = match Sampler::new(pid, opts, cache).run() {
        Ok(second) if !second.vanished => {
            let mut sample = second.sample;
            sample
                .warnings
                .push("the process changed while it was sampled; sampled again".to_string());
            return Ok(sample);
        }
        Ok(second) => second.sample,
        Err(_) => first.sample,
    };
    result.partial = true;
    result.warnings.push(format!(
        "process {pid} exited (or its pid was reused) while it was sampled, also on a retry: \
         the sample is partial"
    ));
    Ok(result)
}

struct Attempt {
    sample: ProcessSample,
    vanished: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Liveness {
    Alive,
    /// Zombie or dead.
    Exited,
    /// The pid now belongs to another process.
    Reused,
    Gone,
}

struct ProcStat {
    state: char,
    starttime: u64,
}

/// A warning of the sample, in the order the sampling came upon it.
enum Note {
    Text(String),
    /// The warning (if any) of the file hashed as this ticket of the pool.
    Hash(usize),
    /// The sample's wall time ran out (said once, at the first such note).
    WallTime,
}

/// How the hashing of one pool ticket went, for its [`Note::Hash`].
enum Outcome {
    Hashed,
    Failed(String),
    TimedOut,
}

/// Which file of the sample a pool ticket is.
#[derive(Clone, Copy)]
enum Target {
    Executable,
    Lib(usize),
}

/// A file handed to the hash pool: where its hash goes.
struct Pending {
    ticket: usize,
    target: Target,
    path: String,
    /// Charged against the byte cap.
    size: u64,
}

struct Sampler<'a> {
    pid: u32,
    opts: &'a SampleOptions,
    cache: &'a HashCache,
    dir: PathBuf,
    starttime: u64,
    budget: Budget,
    notes: Vec<Note>,
    /// `Note::Text`s kept: past [`MAX_SAMPLE_WARNINGS`] they are only counted.
    texts: usize,
    /// Warnings past [`MAX_SAMPLE_WARNINGS`], counted.
    dropped_warnings: usize,
    /// Files the pool hashes.
    pending: Vec<Pending>,
    vanished: bool,
    /// A cap left something unread: the sample is partial.
    capped: bool,
    /// Past [`SAMPLE_WALL_TIME`], files are listed without being read.
    deadline: Instant,
    timed_out: bool,
    /// The process's root, opened on first use (or why it cannot be).
    root: Option<std::result::Result<Root, String>>,
}

impl<'a> Sampler<'a> {
    fn new(pid: u32, opts: &'a SampleOptions, cache: &'a HashCache) -> Self {
        Sampler {
            pid,
            opts,
            cache,
            dir: opts.proc_root.join(pid.to_string()),
            starttime: 0,
            budget: Budget::new(opts.limits),
            notes: Vec::new(),
            texts: 0,
            dropped_warnings: 0,
            pending: Vec::new(),
            vanished: false,
            capped: false,
            deadline: Instant::now() + SAMPLE_WALL_TIME,
            timed_out: false,
            root: None,
        }
    }

    fn run(mut self) -> Result<Attempt> {
        let stat = self.read_stat().map_err(|e| match e {
            Error::Io { cause, .. } if is_gone(&cause) => Error::NoSuchProcess {
                pid: self.pid,
                path: self.dir.clone(),
            },
            other => other,
        })?;
        if matches!(stat.state, 'Z' | 'X' | 'x') {
            return Err(Error::ProcessExited { pid: self.pid });
        }
        self.starttime = stat.starttime;

        let maps_path = self.dir.join("maps");
        let maps = match File::open(&maps_path)
            .and_then(|file| maps::read_maps(file, &MapsCaps::default()))
        {
            Ok(maps) => maps,
            Err(e) => return Err(self.nothing_sampled(Error::io(maps_path, e))),
        };
        self.capped |= maps.partial;
        for warning in maps.warnings {
            self.warn(warning);
        }
        #[cfg(test)]
        tests::AFTER_MAPS.with(|hook| {
            if let Some(hook) = hook.borrow_mut().as_mut() {
                hook(&self.dir);
            }
        });
        if maps.files.is_empty() && self.liveness() != Liveness::Alive {
            // A zombie's maps are empty: it exited between the stat and the maps.
            return Err(self.nothing_sampled(Error::ProcessExited { pid: self.pid }));
        }

        let cache = self.cache;
        let deadline = self.deadline;
        let ((mut executable, mut loaded_libs, (entrypoint, entry_trace)), hashed) =
            hash_pool(cache, deadline, |pool| {
                let executable = self.executable(pool, maps.lines == 0);
                let mut loaded_libs = Vec::new();
                for f in maps.files.iter().filter(|f| f.executable).filter(|f| {
                    executable.as_ref().is_none_or(|exe| {
                        exe.path != f.path.to_string_lossy() || f.kind != FileKind::Regular
                    })
                }) {
                    let lib = self.loaded_lib(pool, f, Target::Lib(loaded_libs.len()));
                    loaded_libs.push(lib);
                }
                // While the pool hashes.
                let command_line = self.command_line();
                (executable, loaded_libs, command_line)
            });
        let outcomes = self.resolve(hashed, &mut executable, &mut loaded_libs);

        if !self.vanished && self.liveness() == Liveness::Reused {
            self.vanished = true;
        }
        Ok(Attempt {
            sample: ProcessSample {
                pid: self.pid,
                executable,
                loaded_libs,
                entrypoint,
                entry_trace,
                hashed_bytes: self.budget.bytes(),
                partial: self.capped,
                warnings: self.finish_warnings(&outcomes),
            },
            vanished: self.vanished,
        })
    }

    /// The error for a failure before anything was sampled: "no such process" if it is gone.
    fn nothing_sampled(&self, err: Error) -> Error {
        match self.liveness() {
            Liveness::Alive => err,
            Liveness::Exited => Error::ProcessExited { pid: self.pid },
            Liveness::Gone | Liveness::Reused => Error::NoSuchProcess {
                pid: self.pid,
                path: self.dir.clone(),
            },
        }
    }

    fn read_stat(&self) -> Result<ProcStat> {
        let path = self.dir.join("stat");
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let stat = procfs::process::Stat::from_read(file).map_err(|e| match e {
            procfs::ProcError::NotFound(_) => Error::io(
                &path,
                io::Error::new(io::ErrorKind::NotFound, "process exited"),
            ),
            other => Error::Parse {
                path: path.clone(),
                reason: other.to_string(),
            },
        })?;
        Ok(ProcStat {
            state: stat.state,
            starttime: stat.starttime,
        })
    }

    fn liveness(&self) -> Liveness {
        match self.read_stat() {
            // Only called once `run` has set `starttime`.
            Ok(stat) if stat.starttime != self.starttime => Liveness::Reused,
            Ok(stat) if matches!(stat.state, 'Z' | 'X' | 'x') => Liveness::Exited,
            Ok(_) => Liveness::Alive,
            Err(_) => Liveness::Gone,
        }
    }

    /// Records a failure to read something of the process: a warning, and whether the
    /// process went away.
    fn failed(&mut self, what: String) {
        self.warn(what);
        if !self.vanished && self.liveness() != Liveness::Alive {
            self.vanished = true;
        }
    }

    /// Keeps a warning, up to [`MAX_SAMPLE_WARNINGS`] (the others are counted). The cap is
    /// applied again once the hashes are in ([`Sampler::finish_warnings`]): a text dropped
    /// here comes after as many warnings as the cap, so it would be dropped there too.
    fn warn(&mut self, what: String) {
        if self.texts < MAX_SAMPLE_WARNINGS {
            self.texts += 1;
            self.notes.push(Note::Text(what));
        } else {
            self.dropped_warnings += 1;
        }
    }

    /// The warnings in the order the sampling came upon them, up to [`MAX_SAMPLE_WARNINGS`],
    /// with those of the hashes (`outcomes`, by pool ticket) in their places.
    fn finish_warnings(&mut self, outcomes: &[Outcome]) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut dropped = self.dropped_warnings;
        let mut said_wall_time = false;
        for note in std::mem::take(&mut self.notes) {
            let text = match note {
                Note::Text(text) => text,
                Note::Hash(ticket) => match outcomes.get(ticket) {
                    Some(Outcome::Failed(text)) => text.clone(),
                    Some(Outcome::TimedOut) if !said_wall_time => {
                        said_wall_time = true;
                        wall_time_warning()
                    }
                    _ => continue,
                },
                Note::WallTime if !said_wall_time => {
                    said_wall_time = true;
                    wall_time_warning()
                }
                Note::WallTime => continue,
            };
            if warnings.len() < MAX_SAMPLE_WARNINGS {
                warnings.push(text);
            } else {
                dropped += 1;
            }
        }
        if dropped > 0 {
            warnings.push(format!("{dropped} more warnings not listed (cap)"));
        }
        warnings
    }

    /// Puts the pool's hashes in their files, in the order the files were submitted: a read
    /// that failed is looked into as when the file is hashed on the spot (did the process go
    /// away?); a file the wall time left unread is capped and its bytes not charged.
    fn resolve(
        &mut self,
        hashed: Vec<Hashed>,
        executable: &mut Option<Executable>,
        libs: &mut [LoadedLib],
    ) -> Vec<Outcome> {
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(hashed.len());
        for (pending, hashed) in std::mem::take(&mut self.pending).into_iter().zip(hashed) {
            debug_assert_eq!(pending.ticket, outcomes.len());
            let slot = match pending.target {
                Target::Executable => executable
                    .as_mut()
                    .map(|exe| (&mut exe.sha256, &mut exe.capped)),
                Target::Lib(i) => libs
                    .get_mut(i)
                    .map(|lib| (&mut lib.sha256, &mut lib.capped)),
            };
            // Every ticket is the executable's or a listed library's.
            let Some((sha256, capped)) = slot else {
                outcomes.push(Outcome::Hashed);
                continue;
            };
            let outcome = match hashed {
                Hashed::Done(Ok(hash)) => {
                    *sha256 = Some(hash.sha256);
                    Outcome::Hashed
                }
                Hashed::Done(Err(e)) => {
                    if !self.vanished && self.liveness() != Liveness::Alive {
                        self.vanished = true;
                    }
                    Outcome::Failed(format!("{}: sha256: {}", pending.path, error_cause(&e)))
                }
                Hashed::TimedOut => {
                    *capped = Some(Capped::WallTime);
                    self.capped = true;
                    self.budget.refund(pending.size);
                    Outcome::TimedOut
                }
            };
            outcomes.push(outcome);
        }
        outcomes
    }

    fn executable(&mut self, pool: &mut HashPool<'_, '_>, no_maps: bool) -> Option<Executable> {
        let link = self.dir.join("exe");
        let target = match fs::read_link(&link) {
            Ok(target) => target,
            Err(e) => {
                let kernel_thread = e.kind() == io::ErrorKind::NotFound && no_maps;
                if kernel_thread && self.liveness() == Liveness::Alive {
                    self.warn("no executable: a kernel thread has none".to_string());
                } else {
                    self.failed(format!("executable: {}: {e}", link.display()));
                }
                return None;
            }
        };
        let (path, deleted) = strip_deleted(&target.to_string_lossy());
        let mut exe = Executable {
            path,
            sha256: None,
            build_id: None,
            deleted,
            capped: None,
        };
        // `exe` opens the very file the process runs, deleted or not, wherever it lives.
        let file = match open_regular(&link) {
            Ok(file) => file,
            Err(e) => {
                self.failed(format!("executable {}: {e}", exe.path));
                return Some(exe);
            }
        };
        let (sha256, build_id, capped) = self.inspect(pool, file, &exe.path, Target::Executable);
        exe.sha256 = sha256;
        exe.build_id = build_id;
        exe.capped = capped;
        Some(exe)
    }

    fn loaded_lib(
        &mut self,
        pool: &mut HashPool<'_, '_>,
        mapped: &MappedFile,
        target: Target,
    ) -> LoadedLib {
        let mut lib = LoadedLib {
            path: mapped.path.to_string_lossy().into_owned(),
            inode: mapped.inode,
            sha256: None,
            build_id: None,
            deleted: mapped.deleted,
            capped: None,
        };
        if self.vanished {
            // Keep listing what the maps showed; reading more of a dead process is pointless.
            return lib;
        }
        if Instant::now() > self.deadline {
            if !self.timed_out {
                self.timed_out = true;
                self.notes.push(Note::WallTime);
            }
            self.capped = true;
            lib.capped = Some(Capped::WallTime);
            return lib;
        }
        if let Err(capped) = self.budget.take_lib() {
            lib.capped = Some(capped);
            return lib;
        }
        match self.open_mapped(mapped) {
            Ok(file) => {
                let (sha256, build_id, capped) = self.inspect(pool, file, &lib.path, target);
                lib.sha256 = sha256;
                lib.build_id = build_id;
                lib.capped = capped;
            }
            Err(why) => self.failed(why),
        }
        lib
    }

    /// Opens the mapped file: through the process's root (confined to it) if the file there
    /// is the mapped one (device and inode), else through `map_files`.
    fn open_mapped(&mut self, mapped: &MappedFile) -> std::result::Result<File, String> {
        let display = mapped.path.to_string_lossy().into_owned();
        let mut why = Vec::new();
        if mapped.kind == FileKind::Regular {
            match self.open_in_root(mapped) {
                Ok(file) => return Ok(file),
                Err(e) => why.push(format!("via root: {e}")),
            }
        }
        let via_map_files = self.dir.join("map_files").join(&mapped.map_files_name);
        match open_regular(&via_map_files) {
            Ok(file) => return Ok(file),
            Err(e) => why.push(format!("via map_files: {}", error_cause(&e))),
        }
        Err(format!("{display}: not readable: {}", why.join("; ")))
    }

    fn open_in_root(&mut self, mapped: &MappedFile) -> std::result::Result<File, String> {
        let path = mapped
            .path
            .to_str()
            .ok_or_else(|| "the path is not UTF-8".to_string())?;
        let root_dir = self.dir.join("root");
        let root = self
            .root
            .get_or_insert_with(|| Root::open(&root_dir).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)?;
        let opened = root.open_file(path).map_err(|e| e.to_string())?;
        if is_mapped_file(&opened, mapped) {
            return Ok(opened.file);
        }
        let (major, minor) = opened.meta.dev_major_minor();
        Err(format!(
            "the file at that path is {major:x}:{minor:x} inode {}, not the mapped {:x}:{:x} inode {}",
            opened.meta.ino, mapped.dev.0, mapped.dev.1, mapped.inode
        ))
    }

    /// Build-ids an opened file and, within the byte budget, hashes it: here if the cache
    /// knows it, else through the pool (its sha256 is filled in by [`Sampler::resolve`]).
    fn inspect(
        &mut self,
        pool: &mut HashPool<'_, '_>,
        file: File,
        path: &str,
        target: Target,
    ) -> (Option<String>, Option<String>, Option<Capped>) {
        let display = Path::new(path);
        let build_id = match self.cache.elf(&file, display) {
            Ok(info) => info.build_id,
            Err(e) => {
                self.warn(format!("{path}: build-id: {e}"));
                None
            }
        };
        let meta = match file.metadata() {
            Ok(meta) => meta,
            Err(e) => {
                self.failed(format!("{path}: {e}"));
                return (None, build_id, None);
            }
        };
        let size = meta.len();
        if let Err(capped) = self.budget.take_bytes(size) {
            return (None, build_id, Some(capped));
        }
        if !self.cache.has_sha256(&meta) {
            let ticket = pool.submit(file, size, PathBuf::from(path));
            self.pending.push(Pending {
                ticket,
                target,
                path: path.to_string(),
                size,
            });
            self.notes.push(Note::Hash(ticket));
            return (None, build_id, None);
        }
        match self.cache.sha256(&file, display) {
            Ok(hash) => (Some(hash.sha256), build_id, None),
            Err(e) => {
                self.failed(format!("{path}: sha256: {}", error_cause(&e)));
                (None, build_id, None)
            }
        }
    }

    fn command_line(&mut self) -> (Option<Vec<String>>, Option<EntryTrace>) {
        if self.opts.entry_trace_depth.is_none() && !self.opts.show_args {
            return (None, None);
        }
        let path = self.dir.join("cmdline");
        let argv = match read_capped(&path, MAX_CMDLINE_BYTES) {
            Ok((raw, whole)) => {
                if !whole {
                    self.capped = true;
                    self.warn(format!(
                        "command line longer than {MAX_CMDLINE_BYTES} bytes: only its start is \
                         read (cap)"
                    ));
                }
                split_cmdline(&raw)
            }
            Err(e) => {
                self.failed(format!("command line: {}: {e}", path.display()));
                return (None, None);
            }
        };
        let trace = match self.opts.entry_trace_depth {
            Some(_) if argv.is_empty() => {
                self.warn("empty command line: no entry trace".to_string());
                None
            }
            Some(depth) => Some(entrytrace::trace(
                &self.dir.join("root"),
                &argv,
                None,
                depth,
            )),
            None => None,
        };
        (self.opts.show_args.then_some(argv), trace)
    }
}

fn wall_time_warning() -> String {
    format!(
        "the sample's time budget ({} s) is spent: the files not reached are listed unhashed \
         (cap)",
        SAMPLE_WALL_TIME.as_secs()
    )
}

/// Whether an opened file is the one a maps line names: same device and inode. One
/// exception: kernels before 6.8 show the device of an overlayfs file's real (layer) file
/// in maps, where `fstat` through the overlay shows the overlay's device; there the inode
/// (which overlayfs takes from the real file) must match and the opened file must be on an
/// overlay.
// `statfs`'s field types differ between architectures.
#[allow(clippy::useless_conversion)]
fn is_mapped_file(opened: &confined::Opened, mapped: &MappedFile) -> bool {
    const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;
    if opened.meta.ino != mapped.inode {
        return false;
    }
    opened.meta.dev_major_minor() == mapped.dev
        || rustix::fs::fstatfs(&opened.file)
            .is_ok_and(|fs| i64::from(fs.f_type) == OVERLAYFS_SUPER_MAGIC)
}

/// At most `max` bytes of a file, and whether that was all of it.
pub(crate) fn read_capped(path: &Path, max: u64) -> io::Result<(Vec<u8>, bool)> {
    let mut raw = Vec::new();
    File::open(path)?.take(max + 1).read_to_end(&mut raw)?;
    let whole = raw.len() as u64 <= max;
    raw.truncate(usize::try_from(max).unwrap_or(usize::MAX));
    Ok((raw, whole))
}

/// The I/O cause of an error, without the long `/proc/...` path it was raised on.
fn error_cause(err: &Error) -> String {
    match err {
        Error::Io { cause, .. } => cause.to_string(),
        other => other.to_string(),
    }
}

/// ENOENT/ESRCH: the `/proc/<pid>` entry went away.
fn is_gone(err: &io::Error) -> bool {
    const ESRCH: i32 = 3;
    err.kind() == io::ErrorKind::NotFound || err.raw_os_error() == Some(ESRCH)
}

/// Splits a ` (deleted)` suffix off a path `readlink` returned.
fn strip_deleted(path: &str) -> (String, bool) {
    match path.strip_suffix(" (deleted)") {
        Some(stripped) => (stripped.to_string(), true),
        None => (path.to_string(), false),
    }
}

/// `/proc/<pid>/cmdline` → argv: NUL-separated, with a trailing NUL.
pub fn split_cmdline(raw: &[u8]) -> Vec<String> {
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|&b| b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::tests::readelf_build_id;
    use crate::hashing::{DEFAULT_MAX_LIBS, MAX_HASH_THREADS};
    use std::process::{Child, Command, Stdio};

    type Hook = Box<dyn FnMut(&Path)>;

    thread_local! {
        /// Runs in [`Sampler::run`] right after the maps were read: lets a test make the
        /// process "vanish" mid-sample in a fake procfs.
        pub(super) static AFTER_MAPS: std::cell::RefCell<Option<Hook>> =
            std::cell::RefCell::new(None);
    }

    struct Reaped(Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn sleeper() -> Reaped {
        let child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for the exec to complete: exe becomes sleep.
        let exe = PathBuf::from(format!("/proc/{}/exe", child.id()));
        for _ in 0..200 {
            if fs::read_link(&exe).is_ok_and(|t| t.to_string_lossy().contains("sleep")) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // And for the loader to map libc.
        let maps = PathBuf::from(format!("/proc/{}/maps", child.id()));
        for _ in 0..200 {
            if fs::read_to_string(&maps).is_ok_and(|m| m.contains("libc.so")) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Reaped(child)
    }

    #[test]
    fn samples_a_real_process() {
        let child = sleeper();
        let pid = child.0.id();
        let cache = HashCache::new(64);
        let s = sample(pid, &SampleOptions::default(), &cache).unwrap();
        assert_eq!(s.pid, pid);
        assert!(!s.partial, "{:?}", s.warnings);
        let exe = s.executable.as_ref().unwrap();
        let real_exe = fs::canonicalize(
            Command::new("sh")
                .args(["-c", "command -v sleep"])
                .output()
                .map(|o| String::from_utf8(o.stdout).unwrap().trim().to_string())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(Path::new(&exe.path), real_exe);
        assert_eq!(exe.build_id, readelf_build_id(&real_exe));
        assert_eq!(
            exe.sha256.as_deref().unwrap(),
            crate::hashing::sha256_file(&real_exe).unwrap().sha256
        );
        let libc = s
            .loaded_libs
            .iter()
            .find(|l| l.path.contains("libc.so"))
            .expect("libc among loadedLibs");
        assert_eq!(
            libc.sha256.as_deref().unwrap(),
            crate::hashing::sha256_file(Path::new(&libc.path))
                .unwrap()
                .sha256
        );
        assert_eq!(libc.build_id, readelf_build_id(Path::new(&libc.path)));
        assert!(libc.inode > 0 && !libc.deleted && libc.capped.is_none());
        // Only code: no locale archives, and not the executable itself.
        assert!(s.loaded_libs.iter().all(|l| l.path != exe.path));
        assert!(s.entrypoint.is_none(), "arguments are redacted by default");
        assert!(s.entry_trace.is_some());
        // Second sample: everything from the cache.
        let before = cache.bytes_hashed();
        let again = sample(pid, &SampleOptions::default(), &cache).unwrap();
        assert_eq!(cache.bytes_hashed(), before);
        assert_eq!(again.loaded_libs, s.loaded_libs);
        assert_eq!(again.hashed_bytes, s.hashed_bytes);
    }

    #[test]
    fn show_args_reports_the_command_line() {
        let child = sleeper();
        let opts = SampleOptions {
            show_args: true,
            entry_trace_depth: None,
            ..SampleOptions::default()
        };
        let s = sample(child.0.id(), &opts, &HashCache::new(8)).unwrap();
        assert_eq!(s.entrypoint.unwrap(), ["sleep", "30"]);
        assert!(s.entry_trace.is_none());
    }

    #[test]
    fn caps_leave_files_listed_without_hashes() {
        let child = sleeper();
        let opts = SampleOptions {
            limits: Limits {
                max_libs: 1,
                max_hash_bytes_per_container: 1,
            },
            ..SampleOptions::default()
        };
        let s = sample(child.0.id(), &opts, &HashCache::new(8)).unwrap();
        let exe = s.executable.unwrap();
        assert_eq!(exe.capped, Some(Capped::MaxHashBytes));
        assert!(exe.sha256.is_none() && exe.build_id.is_some());
        assert!(s.loaded_libs.len() >= 2, "{:?}", s.loaded_libs);
        assert_eq!(s.loaded_libs[0].capped, Some(Capped::MaxHashBytes));
        assert!(s.loaded_libs[0].build_id.is_some());
        for lib in &s.loaded_libs[1..] {
            assert_eq!(lib.capped, Some(Capped::MaxLibs));
            assert!(lib.sha256.is_none() && lib.build_id.is_none());
        }
        assert_eq!(s.hashed_bytes, 0);
    }

    /// `sleep 30` with `LD_PRELOAD` of `copies` distinct copies of the libm next to the libc
    /// `sleep` maps (distinct files: distinct inodes), once they are all mapped.
    fn sleeper_with_copies(
        dir: &crate::testutil::TempDir,
        copies: usize,
    ) -> (Reaped, Vec<PathBuf>) {
        let plain = sleeper();
        let libc = sample(plain.0.id(), &SampleOptions::default(), &HashCache::new(8))
            .unwrap()
            .loaded_libs
            .into_iter()
            .find(|l| l.path.contains("libc.so"))
            .expect("sleep maps libc");
        drop(plain);
        let libm = Path::new(&libc.path).with_file_name("libm.so.6");
        let paths: Vec<PathBuf> = (0..copies)
            .map(|i| {
                let path = dir.join(format!("libm-copy{i}.so"));
                fs::copy(&libm, &path).unwrap_or_else(|e| panic!("{}: {e}", libm.display()));
                path
            })
            .collect();
        let preload: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        let child = Reaped(
            Command::new("sleep")
                .arg("30")
                .env("LD_PRELOAD", preload.join(":"))
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let maps = PathBuf::from(format!("/proc/{}/maps", child.0.id()));
        for _ in 0..400 {
            let text = fs::read_to_string(&maps).unwrap_or_default();
            if text.contains("libc.so") && preload.iter().all(|p| text.contains(p.as_str())) {
                return (child, paths);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!(
            "sleep did not map its preloaded copies: {}",
            preload.join(":")
        );
    }

    /// The files a sample hashed, with their sha256 (executable first, then maps order).
    fn hashed(s: &ProcessSample) -> Vec<(String, Option<String>, Option<Capped>)> {
        let exe = s
            .executable
            .iter()
            .map(|e| (e.path.clone(), e.sha256.clone(), e.capped));
        let libs = s
            .loaded_libs
            .iter()
            .map(|l| (l.path.clone(), l.sha256.clone(), l.capped));
        exe.chain(libs).collect()
    }

    #[test]
    fn parallel_hashing_gives_the_sequential_result() {
        let dir = crate::testutil::TempDir::new("parallel-real");
        let (child, copies) = sleeper_with_copies(&dir, 12);
        let pid = child.0.id();
        let sequential_cache = HashCache::new(64).with_hash_threads(1);
        let sequential = sample(pid, &SampleOptions::default(), &sequential_cache).unwrap();
        assert!(!sequential.partial, "{:?}", sequential.warnings);
        // Every file hashed, each to what a plain read of it gives.
        let files = hashed(&sequential);
        assert!(files.len() >= copies.len() + 3, "{files:?}");
        for copy in &copies {
            assert!(
                files.iter().any(|(p, ..)| Path::new(p) == copy),
                "{}",
                copy.display()
            );
        }
        for (path, sha256, capped) in &files {
            let on_disk = crate::hashing::sha256_file(Path::new(path)).unwrap().sha256;
            assert_eq!(sha256.as_deref(), Some(&*on_disk), "{path}");
            assert!(capped.is_none());
        }
        for threads in [2, MAX_HASH_THREADS] {
            let cache = HashCache::new(64).with_hash_threads(threads);
            let parallel = sample(pid, &SampleOptions::default(), &cache).unwrap();
            assert_eq!(parallel, sequential, "{threads} threads");
            // Each file read once, whatever the width.
            assert_eq!(cache.bytes_hashed(), sequential_cache.bytes_hashed());
            assert_eq!(cache.misses(), sequential_cache.misses());
            // Again through the filled cache: nothing read, the same sample.
            let warm = sample(pid, &SampleOptions::default(), &cache).unwrap();
            assert_eq!(warm, sequential);
            assert_eq!(cache.bytes_hashed(), sequential_cache.bytes_hashed());
        }

        // A byte cap reached in the middle of the copies: the same files are hashed and the
        // same ones capped, whatever the width.
        let sizes: Vec<u64> = files
            .iter()
            .map(|(p, ..)| fs::metadata(p).unwrap().len())
            .collect();
        let half = sizes.iter().sum::<u64>() / 2;
        let opts = SampleOptions {
            limits: Limits {
                max_libs: DEFAULT_MAX_LIBS,
                max_hash_bytes_per_container: half,
            },
            ..SampleOptions::default()
        };
        let capped_sequential =
            sample(pid, &opts, &HashCache::new(64).with_hash_threads(1)).unwrap();
        let capped_files = hashed(&capped_sequential);
        assert!(capped_files.iter().any(|(_, sha, _)| sha.is_some()));
        assert!(capped_files
            .iter()
            .any(|(_, _, c)| *c == Some(Capped::MaxHashBytes)));
        assert!(capped_sequential.hashed_bytes <= half);
        for threads in [2, MAX_HASH_THREADS] {
            let cache = HashCache::new(64).with_hash_threads(threads);
            assert_eq!(sample(pid, &opts, &cache).unwrap(), capped_sequential);
            assert_eq!(cache.bytes_hashed(), capped_sequential.hashed_bytes);
        }
    }

    /// A fake procfs process whose libraries are files of the given sizes under its root, each
    /// mapped in that order, plus `/lib/again.so`: a second path to the first library (the
    /// same inode, so the same file for the cache).
    fn fake_process_with_sizes(name: &str, sizes: &[usize]) -> crate::testutil::TempDir {
        let tmp = crate::testutil::TempDir::new(&format!("fake-{name}"));
        let pid_dir = tmp.join("4242");
        fs::create_dir_all(pid_dir.join("root/lib")).unwrap();
        fs::copy(
            format!("/proc/{}/stat", std::process::id()),
            pid_dir.join("stat"),
        )
        .unwrap();
        fs::write(pid_dir.join("cmdline"), b"/bin/app\0").unwrap();
        std::os::unix::fs::symlink("/bin/true", pid_dir.join("exe")).unwrap();
        std::os::unix::fs::symlink("/lib/lib0.so", pid_dir.join("root/lib/again.so")).unwrap();
        let mut maps = String::new();
        let mut first = None;
        for (i, size) in sizes.iter().enumerate() {
            let path = pid_dir.join(format!("root/lib/lib{i}.so"));
            fs::write(&path, vec![i as u8; *size]).unwrap();
            use std::os::unix::fs::MetadataExt;
            let ino = fs::metadata(&path).unwrap().ino();
            let dev = dev_of(&path);
            maps.push_str(&format!(
                "7f{i:02x}0-7f{i:02x}1 r-xp 00000000 {dev} {ino} /lib/lib{i}.so\n"
            ));
            first.get_or_insert((dev, ino));
        }
        let (dev, ino) = first.unwrap();
        maps.push_str(&format!(
            "7fff0-7fff1 r-xp 00000000 {dev} {ino} /lib/again.so\n"
        ));
        fs::write(pid_dir.join("maps"), maps).unwrap();
        tmp
    }

    #[test]
    fn byte_cap_boundary_is_the_same_whatever_the_width() {
        let sizes = [4000, 3000, 2000, 500];
        let tmp = fake_process_with_sizes("boundary", &sizes);
        let exe = fs::metadata("/bin/true").unwrap().len();
        let sample_with = |cap: u64, threads: usize| {
            let opts = SampleOptions {
                proc_root: tmp.path().to_path_buf(),
                limits: Limits {
                    max_libs: DEFAULT_MAX_LIBS,
                    max_hash_bytes_per_container: cap,
                },
                entry_trace_depth: None,
                show_args: false,
            };
            let cache = HashCache::new(64).with_hash_threads(threads);
            let s = sample(4242, &opts, &cache).unwrap();
            (s, cache.bytes_hashed())
        };
        let capped_paths = |s: &ProcessSample| -> Vec<String> {
            hashed(s)
                .into_iter()
                .filter(|(_, sha, capped)| {
                    assert_eq!(sha.is_none(), capped.is_some(), "{s:?}");
                    *capped == Some(Capped::MaxHashBytes)
                })
                .map(|(p, ..)| p)
                .collect()
        };

        // Exactly the executable and the first two libraries: both hashed, the next capped;
        // `again.so` (the first library again) is charged too, and refused.
        let cap = exe + 4000 + 3000;
        let (at_cap, read) = sample_with(cap, 1);
        assert_eq!(
            capped_paths(&at_cap),
            ["/lib/lib2.so", "/lib/lib3.so", "/lib/again.so"]
        );
        assert_eq!(at_cap.hashed_bytes, cap);
        assert_eq!(read, cap);
        // One byte less: the second library is capped, the smaller ones after it still fit
        // (`again.so`'s 4000 bytes do not).
        let (below, read_below) = sample_with(cap - 1, 1);
        assert_eq!(capped_paths(&below), ["/lib/lib1.so", "/lib/again.so"]);
        assert_eq!(below.hashed_bytes, exe + 4000 + 2000 + 500);
        assert_eq!(read_below, below.hashed_bytes);
        // Enough for everything: `again.so` is charged but read from the cache, not again.
        let all = exe + 4000 + 3000 + 2000 + 500 + 4000;
        let (everything, read_all) = sample_with(all, 1);
        assert!(capped_paths(&everything).is_empty());
        assert_eq!(everything.hashed_bytes, all);
        assert_eq!(read_all, all - 4000);
        let lib0 = &everything.loaded_libs[0];
        assert_eq!(everything.loaded_libs[4].sha256, lib0.sha256);

        for threads in [2, MAX_HASH_THREADS] {
            for (cap, sequential, read) in [
                (cap, &at_cap, read),
                (cap - 1, &below, read_below),
                (all, &everything, read_all),
            ] {
                let (parallel, parallel_read) = sample_with(cap, threads);
                assert_eq!(&parallel, sequential, "cap {cap}, {threads} threads");
                // The two paths to one file are hashed once, even by two threads at a time.
                assert_eq!(parallel_read, read, "cap {cap}, {threads} threads");
            }
        }
    }

    #[test]
    fn missing_pid_is_no_such_process() {
        let opts = SampleOptions::default();
        let err = sample(u32::MAX - 1, &opts, &HashCache::new(8)).unwrap_err();
        assert!(matches!(err, Error::NoSuchProcess { .. }), "{err}");
        assert!(err.to_string().contains("no such process"));
    }

    #[test]
    fn zombie_is_reported_as_exited() {
        let mut child = Command::new("true").spawn().unwrap();
        let stat = PathBuf::from(format!("/proc/{}/stat", child.id()));
        for _ in 0..400 {
            if fs::read_to_string(&stat).is_ok_and(|s| s.contains(") Z ")) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let err = sample(child.id(), &SampleOptions::default(), &HashCache::new(8)).unwrap_err();
        assert!(matches!(err, Error::ProcessExited { .. }), "{err}");
        child.wait().unwrap();
        let err = sample(child.id(), &SampleOptions::default(), &HashCache::new(8)).unwrap_err();
        assert!(matches!(err, Error::NoSuchProcess { .. }), "{err}");
    }

    /// A fake procfs: a maps file naming files of this machine, whose `root` is a directory
    /// in which one library was replaced by another inode, one is a FIFO and one is missing.
    #[test]
    fn fake_proc_root_checks_inodes_and_never_blocks() {
        let tmp = crate::testutil::TempDir::new("fakeproc");
        let base = tmp.path().to_path_buf();
        let me = std::process::id();
        let pid_dir = base.join("4242");
        fs::create_dir_all(pid_dir.join("root/lib")).unwrap();
        fs::create_dir_all(pid_dir.join("map_files")).unwrap();
        fs::copy(format!("/proc/{me}/stat"), pid_dir.join("stat")).unwrap();
        fs::write(pid_dir.join("cmdline"), b"/bin/app\0--secret=1\0").unwrap();
        std::os::unix::fs::symlink("/bin/true", pid_dir.join("exe")).unwrap();

        fs::copy("/bin/true", pid_dir.join("root/lib/good.so")).unwrap();
        fs::copy("/bin/true", pid_dir.join("root/lib/replaced.so")).unwrap();
        fs::copy("/bin/true", pid_dir.join("root/lib/other-dev.so")).unwrap();
        // An absolute symlink: resolved inside the root (to its own /lib/good.so), not to the
        // observer's /lib.
        std::os::unix::fs::symlink("/lib/good.so", pid_dir.join("root/lib/link.so")).unwrap();
        let status = Command::new("mkfifo")
            .arg(pid_dir.join("root/lib/fifo.so"))
            .status()
            .unwrap();
        assert!(status.success());
        use std::os::unix::fs::MetadataExt;
        let good = fs::metadata(pid_dir.join("root/lib/good.so"))
            .unwrap()
            .ino();
        let fifo = fs::metadata(pid_dir.join("root/lib/fifo.so"))
            .unwrap()
            .ino();
        let other = fs::metadata(pid_dir.join("root/lib/other-dev.so"))
            .unwrap()
            .ino();
        let dev = dev_of(&pid_dir.join("root/lib/good.so"));
        // The same inode on another device is another file.
        let maps = format!(
            "7f00-7f01 r-xp 00000000 {dev} {good} /lib/good.so\n\
             7f10-7f11 r-xp 00000000 {dev} 1 /lib/replaced.so\n\
             7f20-7f21 r-xp 00000000 {dev} {fifo} /lib/fifo.so\n\
             7f30-7f31 r-xp 00000000 {dev} 5 /lib/missing.so (deleted)\n\
             7f40-7f41 r--p 00000000 {dev} 6 /lib/data.bin\n\
             7f50-7f51 r-xp 00000000 fe:7f {other} /lib/other-dev.so\n\
             7f60-7f61 r-xp 00000000 {dev} {good} /lib/link.so\n"
        );
        fs::write(pid_dir.join("maps"), maps).unwrap();
        // map_files fallback for the replaced one.
        std::os::unix::fs::symlink("/bin/true", pid_dir.join("map_files/7f10-7f11")).unwrap();

        let opts = SampleOptions {
            proc_root: base.clone(),
            show_args: false,
            ..SampleOptions::default()
        };
        let s = sample(4242, &opts, &HashCache::new(8)).unwrap();
        let truesum = crate::hashing::sha256_file(Path::new("/bin/true"))
            .unwrap()
            .sha256;
        let by_path = |p: &str| s.loaded_libs.iter().find(|l| l.path == p).unwrap();
        assert_eq!(s.loaded_libs.len(), 6, "data files are not libs");
        assert_eq!(by_path("/lib/good.so").sha256.as_deref(), Some(&*truesum));
        assert_eq!(by_path("/lib/link.so").sha256.as_deref(), Some(&*truesum));
        assert!(by_path("/lib/other-dev.so").sha256.is_none());
        assert_eq!(
            by_path("/lib/replaced.so").sha256.as_deref(),
            Some(&*truesum)
        );
        assert!(by_path("/lib/fifo.so").sha256.is_none());
        assert!(by_path("/lib/missing.so").deleted);
        assert!(by_path("/lib/missing.so").sha256.is_none());
        let text = s.warnings.join("\n");
        assert!(text.contains("/lib/fifo.so: not readable"), "{text}");
        assert!(text.contains("not a regular file"), "{text}");
        assert!(text.contains("/lib/missing.so: not readable"), "{text}");
        assert!(text.contains("/lib/other-dev.so: not readable"), "{text}");
        assert!(text.contains("not the mapped fe:7f inode"), "{text}");
        assert!(!text.contains("replaced.so"), "{text}");
        assert!(!s.partial);
        assert!(s.entrypoint.is_none());
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains("secret"), "{json}");
    }

    /// `major:minor` (hex) of the device holding `path`, as maps shows it.
    fn dev_of(path: &Path) -> String {
        use std::os::unix::fs::MetadataExt;
        let dev = fs::metadata(path).unwrap().dev();
        format!(
            "{:02x}:{:02x}",
            rustix::fs::major(dev),
            rustix::fs::minor(dev)
        )
    }

    /// A fake procfs process with two libraries readable through its root.
    fn fake_process(name: &str) -> (crate::testutil::TempDir, String) {
        let tmp = crate::testutil::TempDir::new(&format!("fake-{name}"));
        let base = tmp.path().to_path_buf();
        let pid_dir = base.join("4242");
        fs::create_dir_all(pid_dir.join("root/lib")).unwrap();
        let stat = fs::read_to_string(format!("/proc/{}/stat", std::process::id())).unwrap();
        fs::write(pid_dir.join("stat"), &stat).unwrap();
        fs::write(pid_dir.join("cmdline"), b"/bin/app\0").unwrap();
        std::os::unix::fs::symlink("/bin/true", pid_dir.join("exe")).unwrap();
        let mut maps = String::new();
        for (i, lib) in ["a.so", "b.so"].iter().enumerate() {
            let path = pid_dir.join("root/lib").join(lib);
            fs::copy("/bin/true", &path).unwrap();
            use std::os::unix::fs::MetadataExt;
            let ino = fs::metadata(&path).unwrap().ino();
            let dev = dev_of(&path);
            maps.push_str(&format!(
                "7f{i}0-7f{i}1 r-xp 00000000 {dev} {ino} /lib/{lib}\n"
            ));
        }
        fs::write(pid_dir.join("maps"), maps).unwrap();
        (tmp, stat)
    }

    #[test]
    fn process_vanishing_mid_sample_gives_a_partial_result() {
        let (tmp, _) = fake_process("vanish");
        let base = tmp.path().to_path_buf();
        AFTER_MAPS.with(|h| {
            *h.borrow_mut() = Some(Box::new(|dir: &Path| {
                let _ = fs::remove_dir_all(dir);
            }))
        });
        let opts = SampleOptions {
            proc_root: base.clone(),
            ..SampleOptions::default()
        };
        let s = sample(4242, &opts, &HashCache::new(8));
        AFTER_MAPS.with(|h| *h.borrow_mut() = None);
        let s = s.unwrap();
        assert!(s.partial);
        assert!(
            s.warnings.iter().any(|w| w.contains("partial")),
            "{:?}",
            s.warnings
        );
        // What the maps showed is still listed, without hashes.
        let paths: Vec<&str> = s.loaded_libs.iter().map(|l| l.path.as_str()).collect();
        assert_eq!(paths, ["/lib/a.so", "/lib/b.so"]);
        assert!(s.loaded_libs.iter().all(|l| l.sha256.is_none()));
    }

    #[test]
    fn pid_reused_mid_sample_is_sampled_again() {
        let (tmp, stat) = fake_process("reuse");
        let base = tmp.path().to_path_buf();
        let mut fired = false;
        AFTER_MAPS.with(|h| {
            *h.borrow_mut() = Some(Box::new(move |dir: &Path| {
                if !fired {
                    fired = true;
                    // Same pid, later start time: another process.
                    let after_comm = stat.rfind(')').unwrap() + 2;
                    let mut fields: Vec<&str> = stat[after_comm..].split(' ').collect();
                    let later = (fields[19].parse::<u64>().unwrap() + 1).to_string();
                    fields[19] = &later;
                    let new = format!("{}{}", &stat[..after_comm], fields.join(" "));
                    fs::write(dir.join("stat"), new).unwrap();
                }
            }))
        });
        let opts = SampleOptions {
            proc_root: base.clone(),
            ..SampleOptions::default()
        };
        let s = sample(4242, &opts, &HashCache::new(8));
        AFTER_MAPS.with(|h| *h.borrow_mut() = None);
        let s = s.unwrap();
        assert!(!s.partial, "{:?}", s.warnings);
        assert!(
            s.warnings.iter().any(|w| w.contains("sampled again")),
            "{:?}",
            s.warnings
        );
        assert!(s.loaded_libs.iter().all(|l| l.sha256.is_some()));
    }

    #[test]
    fn json_shape() {
        let s = ProcessSample {
            pid: 7,
            executable: Some(Executable {
                path: "/bin/app".into(),
                sha256: Some("ab".into()),
                build_id: None,
                deleted: false,
                capped: None,
            }),
            loaded_libs: vec![LoadedLib {
                path: "/lib/x.so".into(),
                inode: 9,
                sha256: None,
                build_id: Some("cd".into()),
                deleted: true,
                capped: Some(Capped::MaxLibs),
            }],
            entrypoint: None,
            entry_trace: None,
            hashed_bytes: 2,
            partial: false,
            warnings: vec![],
        };
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({
                "pid": 7,
                "executable": {"path": "/bin/app", "sha256": "ab", "buildId": null},
                "loadedLibs": [{"path": "/lib/x.so", "inode": 9, "sha256": null,
                                "buildId": "cd", "deleted": true, "capped": "maxLibs"}],
                "hashedBytes": 2,
                "partial": false,
                "warnings": []
            })
        );
    }

    #[test]
    fn cmdline_splitting() {
        assert_eq!(split_cmdline(b"sleep\x0030\x00"), ["sleep", "30"]);
        assert_eq!(split_cmdline(b"a\x00\x00b\x00"), ["a", "", "b"]);
        assert_eq!(
            split_cmdline(b"nginx: worker process"),
            ["nginx: worker process"]
        );
        assert!(split_cmdline(b"").is_empty());
    }

    #[test]
    fn deleted_suffix() {
        assert_eq!(strip_deleted("/a (deleted)"), ("/a".into(), true));
        assert_eq!(strip_deleted("/a"), ("/a".into(), false));
    }
}
