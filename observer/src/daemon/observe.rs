//! What a running container does, read from the host's procfs: its processes (the pids in
//! its cgroup), their executables, the executables in its writable layer, and the sockets
//! its processes listen on. This is what [`crate::drift::detect`] compares with the baseline.
//!
//! Nothing here executes anything, reads environments, or keeps command lines beyond
//! `argv[0]` (which names the applet a busybox process runs). A process that exits while it
//! is read is simply not part of the observation; files are hashed within the container's
//! [`Limits`] through the node-wide [`HashCache`].

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};

use zastava_crds::policy::DriftKinds;

use super::netns::NetNamespaces;
use crate::confined::Root;
use crate::drift::{ExecutableFile, MappedLibrary, Observed, RunningProcess};
use crate::error::Error;
use crate::hashing::{open_regular, Budget, HashCache, Limits};
use crate::limits::{
    MAX_ARGV0_BYTES, MAX_CGROUP_BYTES, MAX_FDS, MAX_MOUNTINFO_BYTES, MAX_UPPER_DEPTH,
    MAX_UPPER_ENTRIES,
};
use crate::sample::{self, read_capped, ProcessSample, SampleOptions};

/// The cgroup of every process of the node, from one pass over `<proc>/*/cgroup`.
///
/// A drift round needs it every time, and reading the cgroup of each of a full node's ~500
/// processes was a large part of the round: [`ProcessTable::rescan`] reads only those of
/// processes it has not seen twice. A process is known by its pid together with the inode
/// number of its `<proc>/<pid>` directory, which the directory listing gives for nothing: the
/// kernel numbers each process's directory anew, so a pid reused by another process (cheap
/// for a workload: `pid_max` is often 32 768) gets another inode and is read again.
#[derive(Debug, Default)]
pub struct ProcessTable {
    processes: HashMap<u32, Member>,
    /// Rescans since the last scan that read every cgroup.
    since_full: u32,
}

#[derive(Debug)]
struct Member {
    /// The inode of `<proc>/<pid>`: which process this pid was when it was read.
    inode: u64,
    cgroup: String,
    /// Read twice in a row with the same answer. A process is placed in its container's
    /// cgroup just after it starts (runc forks its init, then moves it), so a first read can
    /// catch the parent's cgroup; only a repeated answer is kept without reading again.
    settled: bool,
}

/// Every this many rescans, every cgroup is read again: a process moved to another cgroup
/// later (which takes privileges in the container) is seen within that many rounds.
pub const FULL_SCAN_EVERY: u32 = 12;

impl ProcessTable {
    /// Reads the cgroup of every process; those that exit meanwhile are left out.
    pub fn scan(proc_root: &Path) -> io::Result<Self> {
        ProcessTable::default().rescan(proc_root)
    }

    /// The table of now: the cgroups of processes this table holds settled under the same
    /// pid and inode are kept, every other one is read (all of them every
    /// [`FULL_SCAN_EVERY`] rescans).
    pub fn rescan(&self, proc_root: &Path) -> io::Result<Self> {
        let full = self.since_full + 1 >= FULL_SCAN_EVERY;
        let mut processes = HashMap::with_capacity(self.processes.len());
        for entry in fs::read_dir(proc_root)? {
            let Ok(entry) = entry else { continue };
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let inode = entry.ino();
            let known = self.processes.get(&pid).filter(|m| m.inode == inode);
            if let Some(m) = known.filter(|m| m.settled && !full) {
                processes.insert(
                    pid,
                    Member {
                        inode,
                        cgroup: m.cgroup.clone(),
                        settled: true,
                    },
                );
                continue;
            }
            // A cgroup path longer than the cap is no container's: left out.
            if let Ok((cgroup, true)) = read_capped(&entry.path().join("cgroup"), MAX_CGROUP_BYTES)
            {
                let cgroup = String::from_utf8_lossy(&cgroup).into_owned();
                let settled = known.is_some_and(|m| m.cgroup == cgroup);
                processes.insert(
                    pid,
                    Member {
                        inode,
                        cgroup,
                        settled,
                    },
                );
            }
        }
        Ok(ProcessTable {
            processes,
            since_full: if full { 0 } else { self.since_full + 1 },
        })
    }

    /// The processes in the same cgroups as `main_pid` (itself included), sorted: a
    /// container's processes, including those `kubectl exec` started.
    pub fn members(&self, main_pid: u32) -> Vec<u32> {
        let Some(cgroup) = self.processes.get(&main_pid).map(|m| &m.cgroup) else {
            return Vec::new();
        };
        let mut pids: Vec<u32> = self
            .processes
            .iter()
            .filter(|(_, m)| m.cgroup == *cgroup)
            .map(|(pid, _)| *pid)
            .collect();
        pids.sort_unstable();
        pids
    }
}

/// Where and how much to read.
pub struct Collect<'a> {
    /// The host's procfs (`/proc`, or `/host/proc` in the DaemonSet).
    pub proc_root: &'a Path,
    /// Where the host's filesystem is mounted (`/`, or `/host` in the DaemonSet): overlay
    /// upper dirs are host paths.
    pub host_root: &'a Path,
    pub cache: &'a HashCache,
    /// The node's network namespaces' socket tables, kept between rounds.
    pub nets: &'a NetNamespaces,
    pub limits: Limits,
}

/// One observation of one container.
#[derive(Debug, Default)]
pub struct Observation {
    pub observed: Observed,
    /// The samples of the container's processes library drift needed (the main process's
    /// serves the status too).
    pub samples: Vec<ProcessSample>,
    /// What could not be read (the observation goes on without it).
    pub warnings: Vec<String>,
    /// A cap ([`crate::limits`]) hid something (a warning says what): drift may be missed.
    pub partial: bool,
    /// The writable layer, when this observation read `mountinfo` whole: to be kept for the
    /// container's next observations.
    pub layer: Option<WritableLayer>,
}

impl Observation {
    fn capped(&mut self, what: String) {
        self.partial = true;
        self.warnings.push(what);
    }
}

/// Where a container's writable layer is on the host (`None`: its root is no overlay), as its
/// main process's `mountinfo` said when it was read whole. A container's root mount does not
/// change while it runs, so this is read once per container and kept: a `mountinfo` read
/// formats every mount of the namespace (~80 µs here), which was the largest part of a drift
/// round's CPU once the socket tables were kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WritableLayer(pub Option<PathBuf>);

/// Observes the container whose main process is `main_pid` and whose processes are `pids`,
/// reading only what the enabled drift `kinds` need. `known_layer` is the [`WritableLayer`]
/// an earlier observation of this container found ([`Observation::layer`]); without it,
/// `mountinfo` is read.
pub fn observe(
    c: &Collect,
    main_pid: u32,
    pids: &[u32],
    kinds: &DriftKinds,
    known_layer: Option<&WritableLayer>,
) -> Observation {
    let mut out = Observation::default();
    let mut budget = Budget::new(c.limits);
    let upper = if kinds.filesystem {
        match known_layer {
            Some(layer) => layer.0.clone(),
            None => {
                let found = writable_layer(c, main_pid, &mut out);
                let upper = found.as_ref().and_then(|l| l.0.clone());
                out.layer = found;
                upper
            }
        }
    } else {
        None
    };
    let upper_root = upper.as_deref().and_then(|u| match Root::open(u) {
        Ok(root) => Some(root),
        Err(e) => {
            out.warnings
                .push(format!("writable layer {}: {e}", u.display()));
            None
        }
    });
    if kinds.process || kinds.filesystem {
        for &pid in pids {
            if let Some((process, file)) = process(c, pid, upper_root.as_ref(), &mut budget) {
                if kinds.process {
                    out.observed.processes.push(process);
                }
                if kinds.filesystem {
                    out.observed.executables.push(file);
                }
            }
        }
    }
    if let Some(upper) = &upper_root {
        let (found, capped) = writable_layer_executables(c, upper, &mut budget, &mut out.warnings);
        out.observed.executables.extend(found);
        if capped {
            out.capped(format!(
                "writable layer has more than {MAX_UPPER_ENTRIES} entries: the rest is not \
                 inspected (cap)"
            ));
        }
    }
    if kinds.library {
        let opts = SampleOptions {
            proc_root: c.proc_root.to_path_buf(),
            limits: c.limits,
            entry_trace_depth: None,
            show_args: false,
        };
        for &pid in pids {
            match sample::sample(pid, &opts, c.cache) {
                Ok(s) => {
                    if s.partial {
                        out.partial = true;
                    }
                    out.observed
                        .libraries
                        .extend(s.loaded_libs.iter().map(|l| MappedLibrary {
                            pid,
                            path: l.path.clone(),
                            sha256: l.sha256.clone(),
                        }));
                    out.samples.push(s);
                }
                // Exited since the process table was read: nothing left to drift.
                Err(Error::NoSuchProcess { .. } | Error::ProcessExited { .. }) => {}
                Err(e) => out.warnings.push(format!("libraries of pid {pid}: {e}")),
            }
        }
    }
    if kinds.network {
        let mut inodes = BTreeSet::new();
        for &pid in pids {
            let (found, capped) = socket_inodes(c.proc_root, pid);
            inodes.extend(found);
            if capped {
                out.capped(format!(
                    "pid {pid} has more than {MAX_FDS} open files: the sockets of the others \
                     are not looked at (cap)"
                ));
            }
        }
        // The tables of the main process's network namespace (the pod's: shared by its
        // containers), kept between rounds while it does not change.
        let tables = c.nets.sockets(c.proc_root, main_pid, &inodes);
        for capped in tables.capped {
            out.capped(capped);
        }
        out.warnings.extend(tables.errors);
        out.observed.sockets.extend(tables.sockets);
    }
    out
}

/// The writable layer from `main_pid`'s `mountinfo`; `None` (with a warning) when it could
/// not be read whole, so that the next round reads it again.
fn writable_layer(c: &Collect, main_pid: u32, out: &mut Observation) -> Option<WritableLayer> {
    let path = c.proc_root.join(main_pid.to_string()).join("mountinfo");
    match read_capped(&path, MAX_MOUNTINFO_BYTES) {
        Ok((text, whole)) => {
            let found = overlay_upperdir(&String::from_utf8_lossy(&text));
            match (found, whole) {
                (Some(upper), _) => Some(WritableLayer(Some(under_root(c.host_root, &upper)))),
                (None, true) => Some(WritableLayer(None)),
                (None, false) => {
                    out.capped(format!(
                        "mountinfo of pid {main_pid}: no overlay root mount in its first \
                         {MAX_MOUNTINFO_BYTES} bytes (cap): the writable layer is not inspected"
                    ));
                    None
                }
            }
        }
        Err(e) => {
            out.warnings
                .push(format!("mountinfo of pid {main_pid}: {e}"));
            None
        }
    }
}

/// A process and its executable file, or `None` when it has none (a kernel thread) or exited.
fn process(
    c: &Collect,
    pid: u32,
    upper: Option<&Root>,
    budget: &mut Budget,
) -> Option<(RunningProcess, ExecutableFile)> {
    let dir = c.proc_root.join(pid.to_string());
    let link = dir.join("exe");
    let target = fs::read_link(&link).ok()?;
    let target = target.to_string_lossy();
    let exe = target
        .strip_suffix(" (deleted)")
        .unwrap_or(&target)
        .to_string();
    let argv0 = fs::File::open(dir.join("cmdline")).ok().and_then(|f| {
        let mut raw = Vec::new();
        f.take(MAX_ARGV0_BYTES).read_to_end(&mut raw).ok()?;
        let first = raw.split(|&b| b == 0).next()?;
        (!first.is_empty()).then(|| String::from_utf8_lossy(first).into_owned())
    });
    // `exe` opens the very file the process runs, wherever it lives.
    let (sha256, mtime) = match open_regular(&link) {
        Ok(file) => {
            let mtime = file.metadata().ok().map(|m| m.mtime());
            (hash(c.cache, budget, &file, &exe), mtime)
        }
        Err(_) => (None, None),
    };
    // A regular file (not a symlink) at that path in the writable layer, looked up inside it.
    let in_writable_layer = upper.is_some_and(|u| u.lstat(&exe).is_ok_and(|m| m.is_file()));
    Some((
        RunningProcess {
            pid,
            exe: exe.clone(),
            argv0,
            sha256: sha256.clone(),
        },
        ExecutableFile {
            path: exe,
            sha256,
            mtime,
            in_writable_layer,
        },
    ))
}

fn hash(cache: &HashCache, budget: &mut Budget, file: &fs::File, path: &str) -> Option<String> {
    let size = file.metadata().ok()?.len();
    budget.take_bytes(size).ok()?;
    cache.sha256(file, Path::new(path)).ok().map(|h| h.sha256)
}

/// `path` (absolute) below `root`.
fn under_root(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Executable regular files in the writable layer (the overlay upper dir, opened as a
/// [`Root`]), with their paths inside the container; and whether [`MAX_UPPER_ENTRIES`] left
/// some unvisited. Symlinks are never followed (nor is anything resolved outside the
/// layer), and a file is only hashed when the opened file is the one listed (same device
/// and inode): the container owns this directory and could swap a file meanwhile.
fn writable_layer_executables(
    c: &Collect,
    upper: &Root,
    budget: &mut Budget,
    warnings: &mut Vec<String>,
) -> (Vec<ExecutableFile>, bool) {
    let mut found = Vec::new();
    let mut visited = 0usize;
    let mut todo: Vec<(String, usize)> = vec![(String::new(), 0)];
    while let Some((relative, depth)) = todo.pop() {
        let dir = format!("/{relative}");
        let (names, more) = match upper.read_dir(&dir, MAX_UPPER_ENTRIES - visited) {
            Ok(listed) => listed,
            Err(e) => {
                warnings.push(format!("writable layer {dir}: {e}"));
                continue;
            }
        };
        for name in names {
            visited += 1;
            let path = match relative.as_str() {
                "" => format!("/{name}"),
                _ => format!("/{relative}/{name}"),
            };
            let Ok(meta) = upper.lstat(&path) else {
                continue;
            };
            if meta.is_dir() {
                if depth < MAX_UPPER_DEPTH {
                    todo.push((path[1..].to_string(), depth + 1));
                }
                continue;
            }
            if !meta.is_executable() {
                continue;
            }
            let sha256 = upper.open_file(&path).ok().and_then(|opened| {
                (opened.meta.dev == meta.dev && opened.meta.ino == meta.ino)
                    .then(|| hash(c.cache, budget, &opened.file, &path))?
            });
            found.push(ExecutableFile {
                path,
                sha256,
                mtime: Some(meta.mtime),
                in_writable_layer: true,
            });
        }
        if more {
            return (found, true);
        }
    }
    (found, false)
}

/// The overlay upper dir of the root mount in a `/proc/<pid>/mountinfo` (the container's
/// writable layer), as a host path.
pub fn overlay_upperdir(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // `36 35 98:0 / / rw,noatime master:1 - overlay overlay rw,lowerdir=..,upperdir=..`
        let (mount, fs) = line.split_once(" - ")?;
        let mount_point = mount.split(' ').nth(4)?;
        let mut fs = fs.split(' ');
        if mount_point != "/" || fs.next()? != "overlay" {
            return None;
        }
        let options = fs.nth(1)?;
        options
            .split(',')
            .find_map(|o| o.strip_prefix("upperdir="))
            .map(|u| PathBuf::from(unescape_octal(u)))
    })
}

/// mountinfo writes space, tab, newline and backslash as `\040`, `\011`, `\012`, `\134`.
fn unescape_octal(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) if bytes[i] == b'\\' => {
                out.push(
                    d.iter()
                        .fold(0u8, |n, b| n.wrapping_mul(8).wrapping_add(b - b'0')),
                );
                i += 4;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The socket inodes among the first [`MAX_FDS`] open files of `pid`, and whether it has
/// more.
fn socket_inodes(proc_root: &Path, pid: u32) -> (BTreeSet<u64>, bool) {
    let Ok(mut fds) = fs::read_dir(proc_root.join(pid.to_string()).join("fd")) else {
        return (BTreeSet::new(), false);
    };
    let inodes = fds
        .by_ref()
        .take(MAX_FDS)
        .flatten()
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .filter_map(|target| socket_inode(&target.to_string_lossy()))
        .collect();
    (inodes, fds.next().is_some())
}

/// `socket:[12345]` → 12345.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_NET_ENTRIES;
    use crate::testutil::TempDir;
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};

    #[test]
    fn upperdir_of_the_root_mount() {
        let mountinfo = "\
1 0 0:1 / /proc rw - proc proc rw
2268 2101 0:250 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/var/lib/containerd/s/1/fs,upperdir=/var/lib/containerd/s/2/fs,workdir=/var/lib/containerd/s/2/work
2269 2268 0:251 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k
";
        assert_eq!(
            overlay_upperdir(mountinfo),
            Some(PathBuf::from("/var/lib/containerd/s/2/fs"))
        );
        let escaped = "5 1 0:9 / / rw - overlay overlay rw,lowerdir=/a,upperdir=/tmp/my\\040dir/fs,workdir=/w\n";
        assert_eq!(
            overlay_upperdir(escaped),
            Some(PathBuf::from("/tmp/my dir/fs"))
        );
        // Not overlay, or overlay elsewhere: no writable layer known.
        assert_eq!(
            overlay_upperdir("5 1 8:1 / / rw - ext4 /dev/sda1 rw\n"),
            None
        );
        assert_eq!(
            overlay_upperdir("5 1 0:9 / /data rw - overlay overlay rw,upperdir=/u\n"),
            None
        );
        assert_eq!(overlay_upperdir("garbage\n\n"), None);
        assert_eq!(unescape_octal("a\\134b\\0"), "a\\b\\0");
    }

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("pipe:[12345]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn a_cgroup_groups_a_container_s_processes() {
        let proc_root = TempDir::new("proc-table");
        for (pid, cgroup) in [
            (10, "0::/kubepods/pod1/c1\n"),
            (11, "0::/kubepods/pod1/c1\n"),
            (12, "0::/kubepods/pod1/c2\n"),
            (13, "0::/kubepods/pod1/c1\n"),
        ] {
            let dir = proc_root.join(pid.to_string());
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("cgroup"), cgroup).unwrap();
        }
        // Not processes, or gone mid-scan.
        fs::create_dir_all(proc_root.join("self")).unwrap();
        fs::create_dir_all(proc_root.join("14")).unwrap();
        let table = ProcessTable::scan(proc_root.path()).unwrap();
        assert_eq!(table.members(11), vec![10, 11, 13]);
        assert_eq!(table.members(12), vec![12]);
        assert_eq!(table.members(14), Vec::<u32>::new());
    }

    /// A rescan reads again only what it has not seen settled: a new process, a pid that now
    /// names another process (another inode), a cgroup that changed between two reads; and
    /// every cgroup once in [`FULL_SCAN_EVERY`] rescans.
    #[test]
    fn a_rescan_reads_only_new_or_unsettled_processes() {
        let proc_root = TempDir::new("proc-rescan");
        let write = |pid: &str, cgroup: &str| {
            let dir = proc_root.join(pid);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("cgroup"), cgroup).unwrap();
        };
        let members = |t: &ProcessTable| t.members(20);
        write("20", "0::/shim\n");
        write("21", "0::/kubepods/c1\n");
        let table = ProcessTable::scan(proc_root.path()).unwrap();
        assert_eq!(members(&table), vec![20]);
        // Moved into its container's cgroup after the first read: read again, not settled.
        write("20", "0::/kubepods/c1\n");
        let table = table.rescan(proc_root.path()).unwrap();
        assert_eq!(members(&table), vec![20, 21]);
        // The same answer twice: settled, and from now on kept without reading.
        let table = table.rescan(proc_root.path()).unwrap();
        write("20", "0::/elsewhere\n");
        let table = table.rescan(proc_root.path()).unwrap();
        assert_eq!(members(&table), vec![20, 21], "a settled cgroup is kept");
        // The pid now names another process: its directory is another inode (made while the
        // old one still exists, so the filesystem cannot hand out the same number).
        let next = proc_root.join("20.next");
        fs::create_dir_all(&next).unwrap();
        fs::write(next.join("cgroup"), "0::/kubepods/c2\n").unwrap();
        fs::remove_dir_all(proc_root.join("20")).unwrap();
        fs::rename(&next, proc_root.join("20")).unwrap();
        let mut table = table.rescan(proc_root.path()).unwrap();
        assert_eq!(members(&table), vec![20], "a reused pid is read again");
        // Settled again, then changed in place: seen at the next full scan at the latest.
        table = table.rescan(proc_root.path()).unwrap();
        write("20", "0::/kubepods/c1\n");
        let mut seen_after = None;
        for n in 1..=FULL_SCAN_EVERY {
            table = table.rescan(proc_root.path()).unwrap();
            if members(&table) == vec![20, 21] {
                seen_after = Some(n);
                break;
            }
        }
        assert!(seen_after.is_some(), "never read again");
        // Gone processes leave the table.
        fs::remove_dir_all(proc_root.join("21")).unwrap();
        let table = table.rescan(proc_root.path()).unwrap();
        assert_eq!(table.members(21), Vec::<u32>::new());
    }

    /// A real process of this test: its executable, `argv[0]` and a listening socket; with
    /// a fake writable layer holding a dropped executable and a link out of it.
    #[test]
    fn observes_a_real_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        // `spawn` returns after fork; until the child has exec'd, its maps and command
        // line are still those of this test binary (or empty), so wait for the exec.
        let exec_deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while fs::read(format!("/proc/{}/cmdline", child.id()))
            .map_or(true, |line| !line.starts_with(b"sleep\0"))
        {
            assert!(
                std::time::Instant::now() < exec_deadline,
                "sleep never exec'd"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let pid = std::process::id();
        let upper = TempDir::new("upper");
        fs::create_dir_all(upper.join("tmp")).unwrap();
        fs::write(upper.join("tmp/evil"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(upper.join("tmp/evil"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(upper.join("tmp/data"), b"not executable").unwrap();
        std::os::unix::fs::symlink("/bin/sh", upper.join("tmp/link")).unwrap();

        let cache = HashCache::new(16);
        let c = Collect {
            proc_root: Path::new("/proc"),
            host_root: Path::new("/"),
            cache: &cache,
            nets: &NetNamespaces::new(),
            limits: Limits::default(),
        };
        let mut found = observe(&c, pid, &[pid, child.id()], &DriftKinds::default(), None);
        let (files, capped) = writable_layer_executables(
            &c,
            &Root::open(upper.path()).unwrap(),
            &mut Budget::new(Limits::default()),
            &mut found.warnings,
        );
        assert!(!capped);
        let _ = child.kill();
        let _ = child.wait();

        let me = &found.observed.processes[0];
        assert_eq!(me.pid, pid);
        assert_eq!(
            PathBuf::from(&me.exe),
            fs::read_link("/proc/self/exe").unwrap()
        );
        let sleeper = &found.observed.processes[1];
        assert!(sleeper.exe.ends_with("sleep"), "{}", sleeper.exe);
        assert_eq!(sleeper.argv0.as_deref(), Some("sleep"));
        assert_eq!(
            sleeper.sha256.as_deref(),
            Some(
                crate::hashing::sha256_file(Path::new(&sleeper.exe))
                    .unwrap()
                    .sha256
                    .as_str()
            )
        );
        assert!(found
            .observed
            .sockets
            .iter()
            .any(|s| s.local.port() == port && s.is_listening()));
        assert!(found.observed.executables.iter().all(|f| f.mtime.is_some()));
        // The libraries both processes map (sleep is dynamically linked here), hashed.
        let libc: Vec<_> = found
            .observed
            .libraries
            .iter()
            .filter(|l| l.path.ends_with("/libc.so.6"))
            .collect();
        assert!(
            libc.iter().any(|l| l.pid == child.id()),
            "{:?}",
            found.observed.libraries
        );
        assert!(libc.iter().all(|l| l.sha256.is_some()));
        assert_eq!(found.samples.len(), 2);

        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(files[0].path, "/tmp/evil");
        assert!(files[0].in_writable_layer);
        assert_eq!(
            files[0].sha256.as_deref(),
            Some(
                crate::hashing::sha256_file(&upper.join("tmp/evil"))
                    .unwrap()
                    .sha256
                    .as_str()
            )
        );
        drop(listener);
    }

    /// `mountinfo` is read once per container: the layer the first observation found is
    /// what the next ones inspect, and one that could not be read is read again.
    #[test]
    fn the_writable_layer_is_found_once() {
        let tmp = TempDir::new("observe-layer");
        let pid_dir = tmp.join("77");
        fs::create_dir_all(&pid_dir).unwrap();
        let upper = tmp.join("host/var/lib/c/7/fs");
        fs::create_dir_all(upper.join("tmp")).unwrap();
        fs::write(upper.join("tmp/dropped"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(upper.join("tmp/dropped"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(
            pid_dir.join("mountinfo"),
            "9 1 0:9 / / rw - overlay overlay rw,lowerdir=/l,upperdir=/var/lib/c/7/fs,workdir=/w\n",
        )
        .unwrap();
        let cache = HashCache::new(16);
        let host_root = tmp.join("host");
        let c = Collect {
            proc_root: tmp.path(),
            host_root: &host_root,
            cache: &cache,
            nets: &NetNamespaces::new(),
            limits: Limits::default(),
        };
        let filesystem = DriftKinds {
            process: false,
            library: false,
            filesystem: true,
            network: false,
        };
        let dropped = |o: &Observation| {
            o.observed
                .executables
                .iter()
                .any(|f| f.path == "/tmp/dropped" && f.in_writable_layer)
        };
        let first = observe(&c, 77, &[77], &filesystem, None);
        assert_eq!(first.layer, Some(WritableLayer(Some(upper.clone()))));
        assert!(dropped(&first), "{:?}", first.observed.executables);

        // The process's mountinfo no longer readable: the kept layer is still inspected.
        fs::remove_file(pid_dir.join("mountinfo")).unwrap();
        let next = observe(&c, 77, &[77], &filesystem, first.layer.as_ref());
        assert_eq!(next.layer, None, "nothing new to keep");
        assert!(next.warnings.is_empty(), "{:?}", next.warnings);
        assert!(dropped(&next));

        // Without a kept layer, the unreadable mountinfo is a warning, and nothing is kept.
        let unread = observe(&c, 77, &[77], &filesystem, None);
        assert_eq!(unread.layer, None);
        assert!(unread
            .warnings
            .iter()
            .any(|w| w.contains("mountinfo of pid 77")));
        assert!(!dropped(&unread));
    }

    #[test]
    fn only_what_the_kinds_need_is_read() {
        let cache = HashCache::new(16);
        let c = Collect {
            proc_root: Path::new("/proc"),
            host_root: Path::new("/"),
            cache: &cache,
            nets: &NetNamespaces::new(),
            limits: Limits::default(),
        };
        let pid = std::process::id();
        let none = DriftKinds {
            process: false,
            library: false,
            filesystem: false,
            network: false,
        };
        let found = observe(&c, pid, &[pid], &none, None);
        assert!(found.observed.processes.is_empty());
        assert!(found.observed.executables.is_empty());
        assert!(found.observed.sockets.is_empty());
        assert_eq!(cache.misses(), 0, "nothing hashed");
        // A process that is gone is no part of the observation, and no error.
        let gone = observe(&c, u32::MAX, &[u32::MAX], &DriftKinds::default(), None);
        assert!(gone.observed.processes.is_empty());
    }

    /// A process with more open files than are looked at, in a network namespace with more
    /// sockets than are parsed: the observation says that it is partial, and which caps.
    #[test]
    fn network_caps_make_the_observation_partial() {
        let tmp = TempDir::new("observe-net-caps");
        let pid_dir = tmp.join("4242");
        fs::create_dir_all(pid_dir.join("fd")).unwrap();
        fs::create_dir_all(pid_dir.join("net")).unwrap();
        for fd in 0..=MAX_FDS {
            std::os::unix::fs::symlink(
                format!("socket:[{}]", 1000 + fd),
                pid_dir.join("fd").join(fd.to_string()),
            )
            .unwrap();
        }
        let mut tcp = String::from(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n",
        );
        for i in 0..MAX_NET_ENTRIES + 5 {
            tcp.push_str(&format!(
                "{i:4}: 00000000:{:04X} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 {} 1 0000000000000000 100 0 0 10 0\n",
                1024 + i % 60000,
                1000 + i
            ));
        }
        fs::write(pid_dir.join("net/tcp"), &tcp).unwrap();
        let cache = HashCache::new(16);
        let c = Collect {
            proc_root: tmp.path(),
            host_root: Path::new("/"),
            cache: &cache,
            nets: &NetNamespaces::new(),
            limits: Limits::default(),
        };
        let network = DriftKinds {
            process: false,
            library: false,
            filesystem: false,
            network: true,
        };
        let found = observe(&c, 4242, &[4242], &network, None);
        let text = found.warnings.join("\n");
        assert!(text.contains("open files"), "{text}");
        assert!(text.contains("sockets"), "{text}");
        assert!(found.partial);
        // The sockets of the first MAX_FDS files, among the first MAX_NET_ENTRIES lines.
        assert!(!found.observed.sockets.is_empty());
        assert!(found.observed.sockets.len() <= MAX_FDS);
    }
}
