//! `make bench-observer`: sampling and hashing of a process's mapped libraries, measured
//! against a ceiling in the same run.
//!
//! - A helper process (`python3`, `ctypes.CDLL`) maps N ∈ {64, 256} distinct libraries:
//!   copies of a few real libraries of this machine under distinct names (distinct files, so
//!   distinct inodes). `sample::sample` is timed over R repetitions with a fresh `HashCache`
//!   each time (cold: every file hashed; the page cache is warm, an untimed pass goes first,
//!   so the disk is not what is measured, for the sample and for OpenSSL alike), once with
//!   the default hashing width (`HashCache::hash_threads`, the cores up to a cap) and once on
//!   one thread, and with a filled cache (warm); interleaved with them, `openssl dgst
//!   -sha256` over the very files the sample hashed, timed as a whole process (one thread):
//!   the ceiling (OpenSSL uses the CPU's SHA extensions). The one-thread sample against
//!   OpenSSL is the per-byte comparison on one core; the default-width sample is what a
//!   container start costs in wall time. Every digest the sample reports is checked against
//!   OpenSSL's.
//! - RSS: a child process of this benchmark samples 50 helper processes (each mapping 20 of
//!   the copies, overlapping: shared files, like containers sharing base layers) the way the
//!   daemon does — a sample and an entry trace when a container starts, then rounds of
//!   observe + drift detection + finding merge + posture entry — through one node-wide cache,
//!   and reports its steady VmRSS. That is the sampling path in a small process, not the
//!   daemon (which adds its tokio runtime, kube client, watch caches and HTTP server).
//!
//! Needs `python3` and `openssl` (tests/e2e/bench-observer.sh installs the latter).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use zastava_crds::policy::DriftKinds;
use zastava_crds::posture::{Inventory, ObservedContainer};
use zastava_observer::daemon::netns::NetNamespaces;
use zastava_observer::daemon::observe::{self, Collect, ProcessTable, WritableLayer};
use zastava_observer::drift::{self, Baseline, ContainerRef};
use zastava_observer::entrytrace;
use zastava_observer::entrytrace::EntryTrace;
use zastava_observer::hashing::{self, HashCache, Limits};
use zastava_observer::report::{self, ContainerReport, EventKind, EventRuntime, EventWorkload};
use zastava_observer::sample::{self, ProcessSample, SampleOptions, DEFAULT_MAX_DEPTH};

/// Repetitions of each measurement; medians are reported.
const REPS: usize = 15;
/// Libraries mapped by the helper process of each run.
const SIZES: [usize; 2] = [64, 256];
/// Copied round-robin (a mix of 75 KiB to 760 KiB; 256 copies are about 90 MB). All common
/// on Debian, without TLS segments (hundreds of copies would exhaust the static TLS block)
/// and needing nothing but libc.
const CANDIDATES: [&str; 7] = [
    "libzstd.so.1",
    "libgmp.so.10",
    "libpcre2-8.so.0",
    "liblzma.so.5",
    "libz.so.1",
    "libexpat.so.1",
    "libbz2.so.1.0",
];
/// The RSS measurement: containers on the node, libraries each maps, observation rounds.
const RSS_CONTAINERS: usize = 50;
const RSS_LIBS_PER_CONTAINER: usize = 20;
const RSS_ROUNDS: usize = 10;
/// Set in the environment of the child process that measures RSS: the helpers' pids.
const RSS_CHILD_ENV: &str = "ZASTAVA_BENCH_RSS_PIDS";
/// Targets from the issue: per byte on one core within 1.15x of OpenSSL; the cold sample of
/// the 64-library process within the seed's 30 ms.
const TARGET_COLD_RATIO: f64 = 1.15;
const TARGET_COLD_64_MS: f64 = 30.0;
const TARGET_WARM_MS: f64 = 5.0;
const TARGET_RSS_MB: f64 = 30.0;

/// Maps every library named in the file `argv[1]` (one path a line), says so, then waits
/// until its stdin closes: it dies with the benchmark even if the benchmark is killed.
const HELPER: &str = "import ctypes, sys
libs = [ctypes.CDLL(p) for p in open(sys.argv[1]).read().split('\\n') if p]
print('ready', len(libs), flush=True)
sys.stdin.read()
";

fn main() {
    if let Ok(pids) = std::env::var(RSS_CHILD_ENV) {
        rss_child(&pids);
        return;
    }
    let openssl_version = match Command::new("openssl").arg("version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => panic!(
            "`openssl` is not on PATH: it is the ceiling this benchmark compares with \
             (Debian package `openssl`; `make bench-observer` installs it)"
        ),
    };
    let work = TempDir::new();
    let copies = make_copies(work.path(), *SIZES.iter().max().unwrap());

    println!(
        "zastava-observer sampling benchmark: {REPS} repetitions, medians; {openssl_version}; \
         CPU SHA extensions: {}; load average at start: {}",
        cpu_sha_extensions(),
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "helper: python3 dlopen()ing N distinct copies of {} (round-robin) in {}; a sample also \
         hashes python's own executable and libraries, and OpenSSL hashes the same files",
        CANDIDATES
            .iter()
            .filter(|c| copies.iter().any(|p| p.to_string_lossy().ends_with(*c)))
            .copied()
            .collect::<Vec<_>>()
            .join(", "),
        work.path().display()
    );
    let threads = HashCache::default().hash_threads();
    println!(
        "cold: sample::sample with a fresh HashCache hashing on {threads} threads (the default \
         width here); cold 1 thr: the same on one thread; warm: the same with a filled \
         HashCache; sha256 only: hashing::sha256_file over the files one by one, no sampling; \
         openssl: `openssl dgst -sha256` over the files, whole process. The page cache is warm \
         for all of them."
    );
    println!();
    println!(
        "{:>5} {:>6} {:>12} {:>9} {:>11} {:>9} {:>15} {:>11} {:>13} {:>16}",
        "N",
        "files",
        "bytes hashed",
        "cold ms",
        "cold 1 thr",
        "warm ms",
        "sha256 only ms",
        "openssl ms",
        "cold/openssl",
        "1 thr/openssl"
    );
    let mut runs = Vec::new();
    for n in SIZES {
        let run = measure(work.path(), &copies[..n]);
        println!(
            "{n:>5} {:>6} {:>12} {:>9.2} {:>11.2} {:>9.3} {:>15.2} {:>11.2} {:>13.3} {:>16.3}",
            run.files,
            run.bytes,
            ms(run.cold),
            ms(run.cold_one_thread),
            ms(run.warm),
            ms(run.sha256_only),
            ms(run.openssl),
            ratio(run.cold, run.openssl),
            ratio(run.cold_one_thread, run.openssl),
        );
        runs.push((n, run));
    }
    println!();
    let empty = work.path().join("empty");
    fs::write(&empty, b"").unwrap();
    let startup = median(
        (0..REPS)
            .map(|_| {
                let t = Instant::now();
                openssl_dgst(std::slice::from_ref(&empty));
                t.elapsed()
            })
            .collect(),
    );
    for (n, run) in &runs {
        let r = ratio(run.cold_one_thread, run.openssl);
        // Per byte of hashing alone: OpenSSL without its process start against the files
        // hashed one by one, both on one core.
        let openssl_hashing = run.openssl.saturating_sub(startup);
        println!(
            "target N={n}: per byte on one core within {TARGET_COLD_RATIO}x of OpenSSL: cold \
             sample on 1 thread / openssl {r:.3}x {}  (sha256 only / openssl without its \
             start: {:.3}x; MB/s: 1 thread {:.0}, {threads} threads {:.0}, openssl {:.0}, \
             openssl without its start {:.0})",
            verdict(r <= TARGET_COLD_RATIO),
            ratio(run.sha256_only, openssl_hashing),
            run.bytes as f64 / 1e6 / run.cold_one_thread.as_secs_f64(),
            run.bytes as f64 / 1e6 / run.cold.as_secs_f64(),
            run.bytes as f64 / 1e6 / run.openssl.as_secs_f64(),
            run.bytes as f64 / 1e6 / openssl_hashing.as_secs_f64(),
        );
    }
    println!(
        "(every openssl figure includes its process start: `openssl dgst -sha256` of an empty \
         file takes {:.2} ms here)",
        ms(startup)
    );
    if let Some((_, run)) = runs.iter().find(|(n, _)| *n == 64) {
        println!(
            "target: cold sample of the 64-library process within {TARGET_COLD_64_MS} ms on \
             {threads} threads: {:.2} ms {}",
            ms(run.cold),
            verdict(ms(run.cold) <= TARGET_COLD_64_MS)
        );
    }
    let warm64 = runs.iter().find(|(n, _)| *n == 64).map(|(_, r)| ms(r.warm));
    if let Some(warm) = warm64 {
        println!(
            "target: warm (cached) sample of the 64-library process under {TARGET_WARM_MS} ms: \
             {warm:.3} ms {}",
            verdict(warm < TARGET_WARM_MS)
        );
    }
    println!();
    rss(work.path(), &copies);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// `sha_ni` (x86) or `sha2` (arm64) from /proc/cpuinfo, or "none".
fn cpu_sha_extensions() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags: BTreeSet<&str> = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags") || l.starts_with("Features"))
        .flat_map(|l| l.split_whitespace())
        .filter(|f| matches!(*f, "sha_ni" | "sha2" | "sha512"))
        .collect();
    if flags.is_empty() {
        "none".to_string()
    } else {
        flags.into_iter().collect::<Vec<_>>().join(",")
    }
}

/// A fresh directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("zastava-bench-observer-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `count` distinct copies of the [`CANDIDATES`] found on this machine, round-robin.
fn make_copies(dir: &Path, count: usize) -> Vec<PathBuf> {
    let arch_dir = format!("/usr/lib/{}-linux-gnu", std::env::consts::ARCH);
    let lib_dirs = [
        arch_dir.as_str(),
        "/lib64",
        "/usr/lib64",
        "/usr/lib",
        "/lib",
    ];
    let sources: Vec<(&str, PathBuf)> = CANDIDATES
        .iter()
        .filter_map(|name| {
            lib_dirs
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
                .map(|p| (*name, fs::canonicalize(p).unwrap()))
        })
        .collect();
    assert!(
        sources.len() >= 3,
        "need at least 3 of {CANDIDATES:?} in {lib_dirs:?} to copy, found {sources:?}"
    );
    let copies = dir.join("libs");
    fs::create_dir_all(&copies).unwrap();
    (0..count)
        .map(|i| {
            let (name, source) = &sources[i % sources.len()];
            let path = copies.join(format!("copy{i:03}-{name}"));
            fs::copy(source, &path).unwrap();
            path
        })
        .collect()
}

/// A helper process that maps libraries; killed (and reaped) when dropped.
struct Helper {
    child: Child,
    _stdin: ChildStdin,
}

impl Helper {
    fn start(dir: &Path, tag: &str, libs: &[PathBuf]) -> Helper {
        let list = dir.join(format!("helper-{tag}.list"));
        let text: String = libs.iter().map(|p| format!("{}\n", p.display())).collect();
        fs::write(&list, text).unwrap();
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(HELPER)
            .arg(&list)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start the helper process (`python3` is needed)");
        let stdin = child.stdin.take().unwrap();
        let mut helper = Helper {
            child,
            _stdin: stdin,
        };
        let mut line = String::new();
        BufReader::new(helper.child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            format!("ready {}", libs.len()),
            "the helper could not map its libraries (see its error above)"
        );
        helper.wait_mapped(libs);
        helper
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until /proc/<pid>/maps lists every library.
    fn wait_mapped(&self, libs: &[PathBuf]) {
        let want: BTreeSet<String> = libs.iter().map(|p| p.display().to_string()).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let maps = fs::read_to_string(format!("/proc/{}/maps", self.pid())).unwrap();
            let mapped: BTreeSet<&str> = maps
                .lines()
                .filter_map(|l| l.split_whitespace().nth(5))
                .collect();
            if want.iter().all(|w| mapped.contains(w.as_str())) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "helper {} does not map all its libraries",
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Run {
    files: usize,
    bytes: u64,
    cold: Duration,
    cold_one_thread: Duration,
    warm: Duration,
    sha256_only: Duration,
    openssl: Duration,
}

/// Options of the measured samples: the daemon's, with the caps raised so every mapped file
/// is hashed (256 copies and python's own libraries exceed `maxLibs` and
/// `maxHashBytesPerContainer`; the caps are not what is measured).
fn bench_options() -> SampleOptions {
    SampleOptions {
        limits: Limits {
            max_libs: 4096,
            max_hash_bytes_per_container: u64::MAX,
        },
        ..SampleOptions::default()
    }
}

fn measure(dir: &Path, libs: &[PathBuf]) -> Run {
    let helper = Helper::start(dir, &libs.len().to_string(), libs);
    let pid = helper.pid();
    let opts = bench_options();

    // Untimed: fills the page cache, and says which files a sample hashes.
    let first_cache = HashCache::default();
    let first = sample::sample(pid, &opts, &first_cache).unwrap();
    let hashed = hashed_files(&first, libs);
    let bytes = first_cache.bytes_hashed();
    assert_eq!(bytes, first.hashed_bytes, "every file read once, whole");
    let expected = openssl_digests(&hashed);
    for (path, sha256) in sample_digests(&first) {
        assert_eq!(
            Some(&sha256),
            expected.get(&path),
            "{path}: the sample's sha256 differs from OpenSSL's"
        );
    }

    let warm_cache = HashCache::default();
    sample::sample(pid, &opts, &warm_cache).unwrap();
    let (mut cold, mut cold1, mut warm, mut only, mut openssl) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..REPS {
        // Interleaved, so whatever else the machine does weighs on all of them alike.
        let cache = HashCache::default();
        let t = Instant::now();
        let s = sample::sample(pid, &opts, &cache).unwrap();
        cold.push(t.elapsed());
        assert_eq!(cache.bytes_hashed(), bytes);
        assert_eq!(s, first, "the same sample whatever the cache and the width");

        let cache = HashCache::default().with_hash_threads(1);
        let t = Instant::now();
        let s = sample::sample(pid, &opts, &cache).unwrap();
        cold1.push(t.elapsed());
        assert_eq!(cache.bytes_hashed(), bytes);
        assert_eq!(s, first);

        let t = Instant::now();
        openssl_dgst(&hashed);
        openssl.push(t.elapsed());

        let t = Instant::now();
        let mut total = 0;
        for path in &hashed {
            total += hashing::sha256_file(path).unwrap().bytes;
        }
        only.push(t.elapsed());
        assert_eq!(total, bytes);

        let before = warm_cache.bytes_hashed();
        let t = Instant::now();
        let s = sample::sample(pid, &opts, &warm_cache).unwrap();
        warm.push(t.elapsed());
        assert_eq!(warm_cache.bytes_hashed(), before, "warm: nothing read");
        assert_eq!(s.hashed_bytes, bytes);
    }
    drop(helper);
    Run {
        files: hashed.len(),
        bytes,
        cold: median(cold),
        cold_one_thread: median(cold1),
        warm: median(warm),
        sha256_only: median(only),
        openssl: median(openssl),
    }
}

/// The files a sample hashed (executable first), checking that every library is among them.
fn hashed_files(s: &ProcessSample, libs: &[PathBuf]) -> Vec<PathBuf> {
    let hashed: Vec<PathBuf> = sample_digests(s)
        .into_iter()
        .map(|(path, _)| PathBuf::from(path))
        .collect();
    for lib in libs {
        assert!(
            hashed.contains(lib),
            "{} was not hashed; sample: {s:#?}",
            lib.display()
        );
    }
    assert!(
        s.loaded_libs
            .iter()
            .all(|l| l.capped.is_none() && l.sha256.is_some()),
        "a library was not hashed: {s:#?}"
    );
    hashed
}

fn sample_digests(s: &ProcessSample) -> Vec<(String, String)> {
    let exe = s
        .executable
        .as_ref()
        .and_then(|e| Some((e.path.clone(), e.sha256.clone()?)));
    exe.into_iter()
        .chain(
            s.loaded_libs
                .iter()
                .filter_map(|l| Some((l.path.clone(), l.sha256.clone()?))),
        )
        .collect()
}

fn openssl_dgst(files: &[PathBuf]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-r"])
        .args(files)
        .stderr(Stdio::inherit())
        .output()
        .expect("cannot run openssl");
    assert!(out.status.success(), "openssl dgst failed");
    out.stdout
}

/// `openssl dgst -sha256 -r` of `files`, by path.
fn openssl_digests(files: &[PathBuf]) -> BTreeMap<String, String> {
    String::from_utf8(openssl_dgst(files))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (digest, path) = l.split_once(' ')?;
            Some((path.trim_start_matches('*').to_string(), digest.to_string()))
        })
        .collect()
}

/// Starts the helpers, runs the RSS measurement in a fresh child process (so nothing of the
/// runs above is in its heap) and prints what it reports.
fn rss(dir: &Path, copies: &[PathBuf]) {
    let window = RSS_LIBS_PER_CONTAINER;
    let helpers: Vec<Helper> = (0..RSS_CONTAINERS)
        .map(|c| {
            let start = (c * 7) % (copies.len() - window);
            Helper::start(dir, &format!("rss{c}"), &copies[start..start + window])
        })
        .collect();
    let pids: Vec<String> = helpers.iter().map(|h| h.pid().to_string()).collect();
    let out = Command::new(std::env::current_exe().unwrap())
        .env(RSS_CHILD_ENV, pids.join(","))
        .stderr(Stdio::inherit())
        .output()
        .expect("cannot start the RSS child process");
    drop(helpers);
    print!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "the RSS child process failed");
}

/// One fake container's state, as the daemon keeps it (`Tracked`).
struct Tracked {
    pid: u32,
    container: ContainerRef,
    observed: ObservedContainer,
    terminals: Vec<String>,
    findings: Vec<zastava_crds::posture::DriftFinding>,
    layer: Option<WritableLayer>,
}

/// Kilobytes of a `VmRSS:`-style line of /proc/self/status.
fn status_kb(field: &str) -> u64 {
    fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// The child process: samples the helpers `pids` like the daemon samples containers.
fn rss_child(pids: &str) {
    let pids: Vec<u32> = pids.split(',').map(|p| p.parse().unwrap()).collect();
    let rss_at_start = status_kb("VmRSS:");
    let proc_root = PathBuf::from(sample::DEFAULT_PROC_ROOT);
    let host_root = PathBuf::from("/");
    let cache = HashCache::default();
    let limits = Limits::default();
    let opts = SampleOptions {
        limits,
        ..SampleOptions::default()
    };
    let kinds = DriftKinds::default();

    // Container starts: a sample and the entry trace, the runtime event built (and dropped,
    // as the daemon logs it).
    let mut tracked: Vec<Tracked> = pids
        .iter()
        .enumerate()
        .map(|(i, &pid)| {
            let s = sample::sample(pid, &opts, &cache).unwrap();
            assert!(s.loaded_libs.len() >= RSS_LIBS_PER_CONTAINER, "{s:#?}");
            let argv: Vec<String> = fs::read(proc_root.join(pid.to_string()).join("cmdline"))
                .unwrap()
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let root = proc_root.join(pid.to_string()).join("root");
            let trace = entrytrace::trace(&root, &argv, None, DEFAULT_MAX_DEPTH);
            let container = ContainerRef {
                pod: format!("bench-{i}"),
                container: "app".to_string(),
            };
            let event = report::RuntimeEvent::new(
                EventKind::ContainerStart,
                &report::now(),
                "bench-node",
                EventRuntime {
                    engine: "containerd".to_string(),
                    version: "bench".to_string(),
                },
                EventWorkload {
                    platform: "kubernetes",
                    namespace: "bench".to_string(),
                    pod: container.pod.clone(),
                    container: container.container.clone(),
                    container_id: format!("{i:064x}"),
                    image_ref: "registry.local/bench:v1".to_string(),
                    owner: None,
                },
            )
            .with_sample(&s, &EntryTrace::default());
            std::hint::black_box(event.to_json());
            Tracked {
                pid,
                observed: ObservedContainer {
                    pod: container.pod.clone(),
                    container: container.container.clone(),
                    container_id: format!("{i:064x}"),
                    image_ref: "registry.local/bench:v1".to_string(),
                    image_digest: Some(format!("sha256:{i:064x}")),
                    pid: Some(pid),
                    started_at: None,
                },
                container,
                terminals: trace.terminals,
                findings: Vec::new(),
                layer: None,
            }
        })
        .collect();
    let rss_after_start = status_kb("VmRSS:");

    // Rounds: every container observed, drift detected and merged, the posture entry built.
    let mut round_times = Vec::new();
    let mut rss_rounds = Vec::new();
    let mut finding_count = 0;
    // What the daemon keeps of its last posture write.
    let mut written = None;
    let nets = NetNamespaces::new();
    for _ in 0..RSS_ROUNDS {
        nets.begin_round();
        let t = Instant::now();
        // The daemon scans the process table every round; each helper is alone in its
        // "container" here (they all share this machine's cgroup, so the cgroup members
        // would be every process of the machine).
        let table = ProcessTable::scan(&proc_root).unwrap();
        std::hint::black_box(&table);
        let collect = Collect {
            proc_root: &proc_root,
            host_root: &host_root,
            cache: &cache,
            nets: &nets,
            limits,
        };
        let now = report::now();
        for t in &mut tracked {
            let found = observe::observe(&collect, t.pid, &[t.pid], &kinds, t.layer.as_ref());
            if found.layer.is_some() {
                t.layer = found.layer.clone();
            }
            let baseline = Baseline {
                terminals: t.terminals.clone(),
                ..Baseline::default()
            };
            let detected = drift::detect(&t.container, &kinds, &baseline, &found.observed);
            t.findings = report::merge_findings(&t.findings, detected, &now).findings;
        }
        let reports: Vec<ContainerReport> = tracked
            .iter()
            .map(|t| ContainerReport {
                observed: t.observed.clone(),
                drift: t.findings.clone(),
                process: None,
            })
            .collect();
        written = Some(report::node_observation(
            "bench-node",
            Inventory::Cri,
            &reports,
        ));
        round_times.push(t.elapsed());
        rss_rounds.push(status_kb("VmRSS:"));
        finding_count = tracked.iter().map(|t| t.findings.len()).sum();
    }
    std::hint::black_box(&written);
    let steady = *rss_rounds.last().unwrap();
    // The kernel walks its whole socket hash table to produce /proc/<pid>/net/tcp{,6}: on
    // some machines that is most of an observation (network drift reads both per container).
    let net_tables = median(
        (0..REPS)
            .map(|_| {
                let t = Instant::now();
                for table in ["tcp", "tcp6"] {
                    let _ = fs::read(proc_root.join(pids[0].to_string()).join("net").join(table));
                }
                t.elapsed()
            })
            .collect(),
    );
    println!(
        "RSS, sampling {} processes in-process (this benchmark's own process, not the daemon: \
         no tokio runtime, kube client, watch caches or HTTP server)",
        tracked.len()
    );
    println!(
        "  {} python3 helpers each dlopen()ing {RSS_LIBS_PER_CONTAINER} of the copies \
         (overlapping windows: shared files); per process a sample + entry trace + runtime \
         event at start, then {RSS_ROUNDS} rounds of observe + drift::detect + merge_findings + \
         node_observation; one node-wide HashCache ({} files, {} bytes hashed); default limits",
        tracked.len(),
        cache.len(),
        cache.bytes_hashed()
    );
    println!(
        "  VmRSS: at start {:.1} MB, after the start samples {:.1} MB, after round 1 {:.1} MB, \
         after round {RSS_ROUNDS} (steady) {:.1} MB; VmHWM {:.1} MB; RssAnon {:.1} MB, \
         RssFile {:.1} MB",
        mb(rss_at_start),
        mb(rss_after_start),
        mb(rss_rounds[0]),
        mb(steady),
        mb(status_kb("VmHWM:")),
        mb(status_kb("RssAnon:")),
        mb(status_kb("RssFile:")),
    );
    println!(
        "  round of {} containers (warm cache): median {:.2} ms, of which reading \
         /proc/<pid>/net/tcp and tcp6 takes {:.2} ms per container here; drift findings held: \
         {finding_count}",
        tracked.len(),
        ms(median(round_times)),
        ms(net_tables)
    );
    println!(
        "target: steady RSS under {TARGET_RSS_MB} MB: {:.1} MB {}",
        mb(steady),
        verdict(mb(steady) < TARGET_RSS_MB)
    );
}
