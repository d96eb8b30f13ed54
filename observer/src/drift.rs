//! Drift: what a running container does that its baseline does not account for. The baseline
//! is known before the container ran — its image (entry trace, SBOM, creation time), its pod
//! spec and the policy — so there is no learning window to poison.
//!
//! Pure functions over plain structs; the shell gathers the inputs (CRI status,
//! `/proc/<pid>/{exe,maps,net/*}`, the overlay upper dir, the image config and SBOM) and writes
//! the findings into `RuntimePosture`.
//!
//! - **Process**: a running program that is neither a terminal of the entry trace nor a
//!   program the policy allows. What a terminal forks runs the same executable and matches;
//!   what it *execs* (a shell from `system()`, a downloaded tool) does not.
//! - **Library**: a mapped DSO the image's CycloneDX SBOM lists neither by path nor by
//!   sha256. Without an SBOM there is nothing to compare with, hence no library drift.
//! - **Filesystem**: an executable in the container's writable layer, or modified after the
//!   image was created.
//! - **Network**: a listening socket on a port neither the pod declares (`containerPorts`)
//!   nor the policy allows (`allowedListeningPorts`).
//!
//! Findings come sorted by kind, then subject, so the same observation always yields the same
//! status (server-side apply then has nothing to change). `first_seen` is left to the caller,
//! which knows when it first saw a finding.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::error::Category;
use zastava_crds::policy::DriftKinds;
use zastava_crds::posture::{DriftFinding, DriftKind, Evidence};

use crate::entrytrace::is_busybox;

/// At most this many pids are listed as evidence of one finding.
const MAX_PIDS_IN_EVIDENCE: usize = 8;

/// The container findings are about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRef {
    pub pod: String,
    pub container: String,
}

/// What is known before the container runs.
#[derive(Clone, Debug, Default)]
pub struct Baseline {
    /// The entry trace's terminal programs (`EntryTrace::terminals`). Empty means there is
    /// no baseline: no process drift is reported rather than every process.
    pub terminals: Vec<String>,
    /// Programs the policy allows besides the terminals: absolute paths, or directories
    /// ending in `/` (everything below them).
    pub allowed_programs: Vec<String>,
    /// The image's SBOM, when one is attached.
    pub sbom: Option<Arc<SbomIndex>>,
    /// The image's `created` time (Unix seconds), from its config.
    pub image_created: Option<i64>,
    /// The `containerPorts` of all the pod's containers: they share one network namespace,
    /// so `/proc/<pid>/net/*` shows the listeners of all of them.
    pub container_ports: Vec<ContainerPort>,
    /// `RuntimeSettings::allowed_listening_ports` of the policy.
    pub allowed_listening_ports: Vec<u16>,
}

/// A declared `containerPort`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContainerPort {
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// From a Kubernetes `containerPort.protocol` (`TCP` when not set); `None` for anything
    /// else.
    pub fn from_k8s(protocol: Option<&str>) -> Option<Protocol> {
        match protocol.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// What was observed in the running container.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub processes: Vec<RunningProcess>,
    pub libraries: Vec<MappedLibrary>,
    pub executables: Vec<ExecutableFile>,
    pub sockets: Vec<Socket>,
}

/// A process of the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningProcess {
    pub pid: u32,
    /// Its executable (`/proc/<pid>/exe`), inside the container, without ` (deleted)`.
    pub exe: String,
    /// `argv[0]`: only looked at when `exe` is busybox, which runs the applet it names.
    pub argv0: Option<String>,
    pub sha256: Option<String>,
}

/// A file a process has mapped code from (`/proc/<pid>/maps`), other than its executable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedLibrary {
    pub pid: u32,
    /// Inside the container.
    pub path: String,
    pub sha256: Option<String>,
}

/// An executable file found in the container's filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutableFile {
    /// Inside the container.
    pub path: String,
    pub sha256: Option<String>,
    /// Modification time, Unix seconds.
    pub mtime: Option<i64>,
    /// Found in the container's writable layer (the overlay upper dir).
    pub in_writable_layer: bool,
}

/// All drift findings of the enabled kinds.
pub fn detect(
    container: &ContainerRef,
    kinds: &DriftKinds,
    baseline: &Baseline,
    observed: &Observed,
) -> Vec<DriftFinding> {
    let mut findings = Vec::new();
    if kinds.process {
        findings.extend(process_drift(
            container,
            &baseline.terminals,
            &baseline.allowed_programs,
            &observed.processes,
        ));
    }
    if kinds.library {
        findings.extend(library_drift(
            container,
            baseline.sbom.as_deref(),
            &observed.libraries,
        ));
    }
    if kinds.filesystem {
        findings.extend(filesystem_drift(
            container,
            baseline.image_created,
            &observed.executables,
        ));
    }
    if kinds.network {
        findings.extend(network_drift(
            container,
            &baseline.container_ports,
            &baseline.allowed_listening_ports,
            &observed.sockets,
        ));
    }
    findings
}

fn finding(
    container: &ContainerRef,
    kind: DriftKind,
    subject: String,
    sha256: Option<String>,
    evidence: Vec<Evidence>,
) -> DriftFinding {
    DriftFinding {
        kind,
        pod: container.pod.clone(),
        container: container.container.clone(),
        subject,
        sha256,
        evidence,
        first_seen: None,
    }
}

fn evidence(signal: &str, value: impl Into<String>) -> Evidence {
    Evidence {
        signal: signal.to_string(),
        value: value.into(),
    }
}

/// The processes one drifted program or library was seen in.
#[derive(Default)]
struct SeenIn {
    /// The first hash known for it.
    sha256: Option<String>,
    pids: BTreeSet<u32>,
}

impl SeenIn {
    fn add(&mut self, pid: u32, sha256: Option<&String>) {
        if self.sha256.is_none() {
            self.sha256 = sha256.cloned();
        }
        self.pids.insert(pid);
    }

    fn pid_evidence(&self) -> impl Iterator<Item = Evidence> + '_ {
        self.pids
            .iter()
            .take(MAX_PIDS_IN_EVIDENCE)
            .map(|pid| evidence("procfs.pid", pid.to_string()))
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

// ---------------------------------------------------------------------------------------------
// Process drift
// ---------------------------------------------------------------------------------------------

/// Processes whose program is neither an entry-trace terminal nor allowed by the policy; one
/// finding per program, with the pids running it.
pub fn process_drift(
    container: &ContainerRef,
    terminals: &[String],
    allowed_programs: &[String],
    processes: &[RunningProcess],
) -> Vec<DriftFinding> {
    if terminals.is_empty() {
        return Vec::new();
    }
    let allowed = |path: &str| {
        terminals.iter().any(|t| t == path)
            || allowed_programs
                .iter()
                .any(|a| a == path || (a.ends_with('/') && path.starts_with(a.as_str())))
    };
    // By (executable, busybox applet).
    let mut drifted: BTreeMap<(String, Option<String>), SeenIn> = BTreeMap::new();
    for p in processes {
        if allowed(&p.exe) {
            continue;
        }
        // Busybox is the applet its argv[0] names: the trace records applets by their path
        // (`/bin/sleep -> busybox` is `/bin/sleep`), so the applet is matched by name.
        let applet = p
            .argv0
            .as_deref()
            .filter(|_| is_busybox(&p.exe))
            .map(basename)
            .filter(|a| !a.is_empty() && *a != "busybox");
        if let Some(applet) = applet {
            let named = |path: &String| basename(path) == applet;
            if terminals.iter().any(named) || allowed_programs.iter().any(named) {
                continue;
            }
        }
        drifted
            .entry((p.exe.clone(), applet.map(str::to_string)))
            .or_default()
            .add(p.pid, p.sha256.as_ref());
    }
    drifted
        .into_iter()
        .map(|((exe, applet), seen)| {
            let mut ev = vec![evidence("procfs.exe", exe.as_str())];
            if let Some(applet) = applet {
                ev.push(evidence("procfs.cmdline.argv0", applet));
            }
            ev.extend(seen.pid_evidence());
            ev.push(evidence("entrytrace.terminals", terminals.join(", ")));
            finding(container, DriftKind::Process, exe, seen.sha256, ev)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Library drift and the SBOM
// ---------------------------------------------------------------------------------------------

/// What an image's CycloneDX SBOM lists: file paths and sha256 hashes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SbomIndex {
    paths: HashSet<String>,
    sha256: HashSet<String>,
    components: usize,
}

impl SbomIndex {
    /// Whether the SBOM lists this file, by path (also under its merged-`/usr` alias:
    /// `/lib/x.so` and `/usr/lib/x.so` are one file on most images, and SBOM tools and
    /// `/proc/<pid>/maps` do not agree on which to show) or by sha256.
    pub fn lists(&self, path: &str, sha256: Option<&str>) -> bool {
        sha256.is_some_and(|h| self.sha256.contains(&h.to_ascii_lowercase()))
            || merged_usr_aliases(&normalize(path)).any(|p| self.paths.contains(&p))
    }

    /// How many components the SBOM has (nested ones included).
    pub fn components(&self) -> usize {
        self.components
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    /// Not JSON, or not shaped like a CycloneDX BOM. (The cause is part of the message.)
    #[error("not CycloneDX JSON: {0}")]
    Json(String),
    /// `bomFormat` is missing or not `CycloneDX` (the value is kept for the caller, but not
    /// shown: the registry controls it).
    #[error("not a CycloneDX BOM: bomFormat is missing or not \"CycloneDX\"")]
    NotCycloneDx(Option<String>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bom {
    bom_format: Option<String>,
    #[serde(default)]
    components: Vec<Component>,
}

#[derive(Deserialize)]
struct Component {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    #[serde(default)]
    hashes: Vec<Hash>,
    #[serde(default)]
    properties: Vec<Property>,
    evidence: Option<ComponentEvidence>,
    #[serde(default)]
    components: Vec<Component>,
}

#[derive(Deserialize)]
struct Hash {
    alg: String,
    content: String,
}

#[derive(Deserialize)]
struct Property {
    name: String,
    value: Option<String>,
}

#[derive(Deserialize)]
struct ComponentEvidence {
    #[serde(default)]
    occurrences: Vec<Occurrence>,
}

#[derive(Deserialize)]
struct Occurrence {
    location: String,
}

/// Reads the paths and sha256 hashes a CycloneDX JSON SBOM lists, wherever generators put
/// them: `file` components named by path, properties whose name ends in `path` (syft's
/// `syft:location:0:path`, Trivy's `aquasecurity:trivy:FilePath`), CycloneDX 1.5
/// `evidence.occurrences[].location`, and `hashes[]` with `alg: SHA-256`.
pub fn parse_cyclonedx(json: &str) -> Result<SbomIndex, SbomError> {
    // A derived struct would also take a JSON array, its fields by position (found by
    // fuzzing: `["CycloneDX", [...]]` was read as a BOM).
    if !json
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
    {
        return Err(SbomError::Json("a BOM is a JSON object".to_string()));
    }
    // Where and what kind of error, never serde_json's text: it quotes the SBOM's strings,
    // which the registry controls, at any length (found by fuzzing).
    let bom: Bom = serde_json::from_str(json).map_err(|e| {
        let what = match e.classify() {
            Category::Syntax | Category::Io => "a syntax error",
            Category::Eof => "the text ends early",
            Category::Data => "a field of the wrong type",
        };
        SbomError::Json(format!("{what} at line {} column {}", e.line(), e.column()))
    })?;
    if bom.bom_format.as_deref() != Some("CycloneDX") {
        return Err(SbomError::NotCycloneDx(bom.bom_format));
    }
    let mut index = SbomIndex::default();
    let mut todo: Vec<&Component> = bom.components.iter().collect();
    while let Some(c) = todo.pop() {
        index.components += 1;
        todo.extend(&c.components);
        if let Some(name) = &c.name {
            if c.kind.as_deref() == Some("file") || name.starts_with('/') {
                index.paths.insert(normalize(name));
            }
        }
        for p in &c.properties {
            if let Some(value) = p.value.as_deref().filter(|v| !v.is_empty()) {
                if p.name.to_ascii_lowercase().ends_with("path") {
                    index.paths.insert(normalize(value));
                }
            }
        }
        for o in c.evidence.iter().flat_map(|e| &e.occurrences) {
            index.paths.insert(normalize(&o.location));
        }
        for h in &c.hashes {
            let alg = h.alg.to_ascii_uppercase();
            let content = h.content.to_ascii_lowercase();
            if (alg == "SHA-256" || alg == "SHA256")
                && content.len() == 64
                && content.bytes().all(|b| b.is_ascii_hexdigit())
            {
                index.sha256.insert(content);
            }
        }
    }
    Ok(index)
}

/// An absolute path without empty, `.` and `..` components (SBOM tools write `usr/lib/x`,
/// `/usr//lib/x`, `./usr/lib/x`).
fn normalize(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// The path and, on a merged-`/usr` layout, the other name of the same file.
fn merged_usr_aliases(path: &str) -> impl Iterator<Item = String> + '_ {
    const DIRS: [&str; 6] = ["lib", "lib32", "lib64", "libx32", "bin", "sbin"];
    let alias = match path.strip_prefix("/usr/") {
        Some(rest) => DIRS
            .iter()
            .any(|d| rest.starts_with(&format!("{d}/")))
            .then(|| format!("/{rest}")),
        None => DIRS
            .iter()
            .any(|d| path.starts_with(&format!("/{d}/")))
            .then(|| format!("/usr{path}")),
    };
    std::iter::once(path.to_string()).chain(alias)
}

/// Mapped libraries the SBOM lists neither by path nor by sha256; one finding per path, with
/// the pids mapping it. No SBOM, no findings.
pub fn library_drift(
    container: &ContainerRef,
    sbom: Option<&SbomIndex>,
    libraries: &[MappedLibrary],
) -> Vec<DriftFinding> {
    let Some(sbom) = sbom else {
        return Vec::new();
    };
    let mut drifted: BTreeMap<&str, SeenIn> = BTreeMap::new();
    for lib in libraries {
        if !sbom.lists(&lib.path, lib.sha256.as_deref()) {
            drifted
                .entry(lib.path.as_str())
                .or_default()
                .add(lib.pid, lib.sha256.as_ref());
        }
    }
    drifted
        .into_iter()
        .map(|(path, seen)| {
            let mut ev = vec![evidence("procfs.maps", path)];
            ev.extend(seen.pid_evidence());
            ev.push(evidence(
                "sbom.cyclonedx",
                format!(
                    "not listed by path or sha256 among {} components",
                    sbom.components()
                ),
            ));
            finding(
                container,
                DriftKind::Library,
                path.to_string(),
                seen.sha256,
                ev,
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Filesystem drift
// ---------------------------------------------------------------------------------------------

/// Executables in the writable layer, or modified after the image was created.
pub fn filesystem_drift(
    container: &ContainerRef,
    image_created: Option<i64>,
    files: &[ExecutableFile],
) -> Vec<DriftFinding> {
    // A `created` of the Unix epoch is what reproducible builds write (SOURCE_DATE_EPOCH=0):
    // it says nothing about when the image was made, so it cannot date a file as newer.
    let created = image_created.filter(|&c| c > 0);
    let mut drifted: BTreeMap<&str, DriftFinding> = BTreeMap::new();
    for f in files {
        let mut ev = Vec::new();
        if f.in_writable_layer {
            ev.push(evidence("overlay.upperdir", f.path.as_str()));
        }
        if let (Some(mtime), Some(created)) = (f.mtime, created) {
            if mtime > created {
                ev.push(evidence("fs.mtime", rfc3339(mtime)));
                ev.push(evidence("image.created", rfc3339(created)));
            }
        }
        if !ev.is_empty() {
            drifted.entry(f.path.as_str()).or_insert_with(|| {
                finding(
                    container,
                    DriftKind::Filesystem,
                    f.path.clone(),
                    f.sha256.clone(),
                    ev,
                )
            });
        }
    }
    drifted.into_values().collect()
}

/// Unix seconds as RFC 3339 UTC (`2024-05-01T10:00:00Z`).
fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// ---------------------------------------------------------------------------------------------
// Network drift and /proc/<pid>/net
// ---------------------------------------------------------------------------------------------

/// A socket table under `/proc/<pid>/net/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NetTable {
    Tcp,
    Tcp6,
    Udp,
    Udp6,
}

impl NetTable {
    pub const ALL: [NetTable; 4] = [NetTable::Tcp, NetTable::Tcp6, NetTable::Udp, NetTable::Udp6];

    /// The file name under `/proc/<pid>/net/`.
    pub fn file_name(self) -> &'static str {
        match self {
            NetTable::Tcp => "tcp",
            NetTable::Tcp6 => "tcp6",
            NetTable::Udp => "udp",
            NetTable::Udp6 => "udp6",
        }
    }

    pub fn protocol(self) -> Protocol {
        match self {
            NetTable::Tcp | NetTable::Tcp6 => Protocol::Tcp,
            NetTable::Udp | NetTable::Udp6 => Protocol::Udp,
        }
    }

    fn is_v6(self) -> bool {
        matches!(self, NetTable::Tcp6 | NetTable::Udp6)
    }
}

/// `TCP_LISTEN` in `include/net/tcp_states.h`.
const TCP_LISTEN: u8 = 0x0A;
/// `TCP_CLOSE`: what an unconnected UDP socket shows.
const TCP_CLOSE: u8 = 0x07;

/// One line of a socket table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Socket {
    pub table: NetTable,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// `st`: a `TCP_*` state.
    pub state: u8,
    pub inode: u64,
}

impl Socket {
    /// A TCP socket in `LISTEN`, or a UDP socket bound to a port and connected to nobody
    /// (a UDP server).
    pub fn is_listening(&self) -> bool {
        match self.table.protocol() {
            Protocol::Tcp => self.state == TCP_LISTEN,
            _ => {
                self.state == TCP_CLOSE
                    && self.local.port() != 0
                    && self.remote.port() == 0
                    && self.remote.ip().is_unspecified()
            }
        }
    }
}

/// Parses the text of `/proc/<pid>/net/{tcp,tcp6,udp,udp6}` (`net/ipv4/tcp_ipv4.c`
/// `get_tcp4_sock`, `udp4_format_sock`, and their IPv6 twins):
///
/// ```text
///   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
///    0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 12345 1 ...
/// ```
///
/// Addresses are 32-bit words printed as native-endian numbers, so they are decoded with
/// this machine's byte order (the observer reads its own node's `/proc`); ports are plain
/// hex. The header and any line that does not parse are skipped.
pub fn parse_proc_net(table: NetTable, text: &str) -> Vec<Socket> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || !fields[0].ends_with(':') {
                return None;
            }
            Some(Socket {
                table,
                local: parse_address(fields[1], table.is_v6())?,
                remote: parse_address(fields[2], table.is_v6())?,
                state: u8::from_str_radix(fields[3], 16).ok()?,
                inode: fields[9].parse().ok()?,
            })
        })
        .collect()
}

/// `0100007F:1F90` / `<32 hex digits>:1F90`.
fn parse_address(text: &str, v6: bool) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes);
    let ip = if v6 {
        if ip.len() != 32 || !ip.is_ascii() {
            return None;
        }
        let mut octets = [0u8; 16];
        for (i, chunk) in octets.chunks_mut(4).enumerate() {
            chunk.copy_from_slice(&word(&ip[i * 8..i * 8 + 8])?);
        }
        IpAddr::V6(Ipv6Addr::from(octets))
    } else {
        if ip.len() != 8 {
            return None;
        }
        IpAddr::V4(Ipv4Addr::from(word(ip)?))
    };
    Some(SocketAddr::new(ip, port))
}

/// Listening sockets on ports the pod does not declare and the policy does not allow; one
/// finding per `proto/port` (a server listening on IPv4 and IPv6 is one finding).
pub fn network_drift(
    container: &ContainerRef,
    container_ports: &[ContainerPort],
    allowed_listening_ports: &[u16],
    sockets: &[Socket],
) -> Vec<DriftFinding> {
    let mut drifted: BTreeMap<(Protocol, u16), Vec<&Socket>> = BTreeMap::new();
    for s in sockets.iter().filter(|s| s.is_listening()) {
        let (protocol, port) = (s.table.protocol(), s.local.port());
        let declared = container_ports
            .iter()
            .any(|p| p.port == port && p.protocol == protocol);
        if !declared && !allowed_listening_ports.contains(&port) {
            drifted.entry((protocol, port)).or_default().push(s);
        }
    }
    let declared = if container_ports.is_empty() {
        "none".to_string()
    } else {
        container_ports
            .iter()
            .map(|p| format!("{}/{}", p.protocol.name(), p.port))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let allowed = if allowed_listening_ports.is_empty() {
        "none".to_string()
    } else {
        allowed_listening_ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    drifted
        .into_iter()
        .map(|((protocol, port), listeners)| {
            let mut ev: Vec<Evidence> = listeners
                .iter()
                .map(|s| {
                    evidence(
                        &format!("procfs.net.{}", s.table.file_name()),
                        format!("{} (inode {})", s.local, s.inode),
                    )
                })
                .collect();
            ev.push(evidence("k8s.pod.containerPorts", declared.as_str()));
            ev.push(evidence("policy.allowedListeningPorts", allowed.as_str()));
            let subject = format!("{}/{port}", protocol.name());
            finding(container, DriftKind::Network, subject, None, ev)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container() -> ContainerRef {
        ContainerRef {
            pod: "api-7c9f-ktd84".into(),
            container: "api".into(),
        }
    }

    fn process(pid: u32, exe: &str, argv0: Option<&str>) -> RunningProcess {
        RunningProcess {
            pid,
            exe: exe.into(),
            argv0: argv0.map(str::to_string),
            sha256: Some(format!("{pid:064x}")),
        }
    }

    fn ev(pairs: &[(&str, &str)]) -> Vec<Evidence> {
        pairs.iter().map(|(s, v)| evidence(s, *v)).collect()
    }

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn process_drift_rules() {
        let terminals = strings(&["/usr/local/bin/redis-server", "/bin/sleep"]);
        let allowed = strings(&["/usr/bin/redis-cli", "/opt/tools/"]);
        let processes = [
            process(1, "/usr/local/bin/redis-server", Some("redis-server")),
            // A forked child runs the same program.
            process(40, "/usr/local/bin/redis-server", Some("redis-rdb-bgsave")),
            process(41, "/usr/bin/redis-cli", None),
            process(42, "/opt/tools/bin/debug", None),
            // The busybox applet the trace recorded, by name or by path.
            process(43, "/bin/busybox", Some("sleep")),
            process(44, "/bin/busybox", Some("/bin/sleep")),
            // Drift: a shell, twice, and a busybox applet nobody expected.
            process(50, "/usr/bin/dash", Some("sh")),
            process(51, "/usr/bin/dash", Some("sh")),
            process(52, "/bin/busybox", Some("nc")),
            // Not allowed by a prefix that is not a directory.
            process(53, "/opt/toolsmith", None),
        ];
        let findings = process_drift(&container(), &terminals, &allowed, &processes);
        let terminals_ev = "/usr/local/bin/redis-server, /bin/sleep";
        let dash = format!("{:064x}", 50);
        let nc = format!("{:064x}", 52);
        let toolsmith = format!("{:064x}", 53);
        assert_eq!(
            findings,
            [
                DriftFinding {
                    kind: DriftKind::Process,
                    pod: "api-7c9f-ktd84".into(),
                    container: "api".into(),
                    subject: "/bin/busybox".into(),
                    sha256: Some(nc),
                    evidence: ev(&[
                        ("procfs.exe", "/bin/busybox"),
                        ("procfs.cmdline.argv0", "nc"),
                        ("procfs.pid", "52"),
                        ("entrytrace.terminals", terminals_ev),
                    ]),
                    first_seen: None,
                },
                DriftFinding {
                    kind: DriftKind::Process,
                    pod: "api-7c9f-ktd84".into(),
                    container: "api".into(),
                    subject: "/opt/toolsmith".into(),
                    sha256: Some(toolsmith),
                    evidence: ev(&[
                        ("procfs.exe", "/opt/toolsmith"),
                        ("procfs.pid", "53"),
                        ("entrytrace.terminals", terminals_ev),
                    ]),
                    first_seen: None,
                },
                DriftFinding {
                    kind: DriftKind::Process,
                    pod: "api-7c9f-ktd84".into(),
                    container: "api".into(),
                    subject: "/usr/bin/dash".into(),
                    sha256: Some(dash),
                    evidence: ev(&[
                        ("procfs.exe", "/usr/bin/dash"),
                        ("procfs.pid", "50"),
                        ("procfs.pid", "51"),
                        ("entrytrace.terminals", terminals_ev),
                    ]),
                    first_seen: None,
                },
            ]
        );
    }

    #[test]
    fn no_entry_trace_no_process_drift() {
        let processes = [process(1, "/tmp/x", None)];
        assert!(process_drift(&container(), &[], &[], &processes).is_empty());
        // With one, the same process is drift.
        let terminals = strings(&["/app"]);
        assert_eq!(
            process_drift(&container(), &terminals, &[], &processes).len(),
            1
        );
    }

    #[test]
    fn many_pids_are_capped_in_evidence() {
        let processes: Vec<RunningProcess> = (1..=20).map(|p| process(p, "/tmp/x", None)).collect();
        let terminals = strings(&["/app"]);
        let f = &process_drift(&container(), &terminals, &[], &processes)[0];
        let pids = f
            .evidence
            .iter()
            .filter(|e| e.signal == "procfs.pid")
            .count();
        assert_eq!(pids, MAX_PIDS_IN_EVIDENCE);
    }

    const SBOM: &str = r#"{
      "bomFormat": "CycloneDX",
      "specVersion": "1.5",
      "components": [
        {
          "type": "library", "name": "libssl3", "version": "3.0.11-1~deb12u2",
          "purl": "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64",
          "properties": [
            {"name": "syft:package:type", "value": "deb"},
            {"name": "syft:location:0:path", "value": "/var/lib/dpkg/status.d/libssl3"},
            {"name": "syft:location:1:path", "value": "/usr/lib/x86_64-linux-gnu/libssl.so.3"}
          ]
        },
        {
          "type": "library", "name": "app-deps",
          "components": [
            {
              "type": "file", "name": "app/lib/libplugin.so",
              "hashes": [{"alg": "SHA-256", "content": "AB00000000000000000000000000000000000000000000000000000000000001"}]
            },
            {
              "type": "library", "name": "jar",
              "properties": [{"name": "aquasecurity:trivy:FilePath", "value": "opt/app/lib/native.so"}],
              "evidence": {"occurrences": [{"location": "/opt/app/lib/other.so"}]}
            }
          ]
        },
        {"type": "file", "name": "/lib/x86_64-linux-gnu/libc.so.6",
         "hashes": [{"alg": "SHA-1", "content": "0000000000000000000000000000000000000000"},
                    {"alg": "SHA-256", "content": "not-hex"}]}
      ]
    }"#;

    fn lib(pid: u32, path: &str, sha256: Option<&str>) -> MappedLibrary {
        MappedLibrary {
            pid,
            path: path.into(),
            sha256: sha256.map(str::to_string),
        }
    }

    #[test]
    fn cyclonedx_paths_and_hashes() {
        let sbom = parse_cyclonedx(SBOM).unwrap();
        assert_eq!(sbom.components(), 5);
        assert!(sbom.lists("/usr/lib/x86_64-linux-gnu/libssl.so.3", None));
        assert!(
            sbom.lists("/lib/x86_64-linux-gnu/libssl.so.3", None),
            "merged /usr"
        );
        assert!(
            sbom.lists("/usr/lib/x86_64-linux-gnu/libc.so.6", None),
            "merged /usr"
        );
        assert!(
            sbom.lists("/app/lib/libplugin.so", None),
            "relative file name"
        );
        assert!(sbom.lists("/opt/app/lib/native.so", None), "Trivy FilePath");
        assert!(
            sbom.lists("/opt/app/lib/other.so", None),
            "evidence.occurrences"
        );
        let hash = "ab00000000000000000000000000000000000000000000000000000000000001";
        assert!(sbom.lists("/anywhere/renamed.so", Some(hash)), "by sha256");
        assert!(sbom.lists("/anywhere/renamed.so", Some(&hash.to_uppercase())));
        assert!(!sbom.lists("/tmp/evil.so", Some(&"0".repeat(64))));
        assert!(!sbom.lists("/usr/lib/x86_64-linux-gnu/libcrypto.so.3", None));
    }

    #[test]
    fn cyclonedx_errors() {
        assert!(matches!(
            parse_cyclonedx(r#"{"spdxVersion": "SPDX-2.3"}"#),
            Err(SbomError::NotCycloneDx(None))
        ));
        assert!(matches!(
            parse_cyclonedx(r#"{"bomFormat": "SPDX"}"#),
            Err(SbomError::NotCycloneDx(Some(f))) if f == "SPDX"
        ));
        let err = parse_cyclonedx("{not json").unwrap_err();
        assert!(err.to_string().starts_with("not CycloneDX JSON: "), "{err}");
        assert!(matches!(
            parse_cyclonedx(r#"{"bomFormat": "CycloneDX", "components": {}}"#),
            Err(SbomError::Json(_))
        ));
        let empty = parse_cyclonedx(r#"{"bomFormat": "CycloneDX"}"#).unwrap();
        assert_eq!(empty.components(), 0);
        // Not an object: the fields of a derived struct by position.
        let array = r#"["CycloneDX", [{"type": "file", "name": "/bin/x"}]]"#;
        assert!(matches!(parse_cyclonedx(array), Err(SbomError::Json(e)) if e.contains("object")));
        // The registry's strings are not quoted back.
        let err = parse_cyclonedx(r#"{"bomFormat": "SECRET"}"#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("SECRET"), "{err}");
        let hostile = r#"{"bomFormat": "CycloneDX", "components": [{"properties": "SECRET"}]}"#;
        let err = parse_cyclonedx(hostile).unwrap_err().to_string();
        assert_eq!(
            err,
            "not CycloneDX JSON: a field of the wrong type at line 1 column 65"
        );
    }

    #[test]
    fn library_drift_rules() {
        let sbom = parse_cyclonedx(SBOM).unwrap();
        let libs = [
            lib(1, "/usr/lib/x86_64-linux-gnu/libssl.so.3", None),
            lib(
                1,
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                Some(&"c".repeat(64)),
            ),
            lib(
                1,
                "/tmp/.x/hook.so",
                Some("ab00000000000000000000000000000000000000000000000000000000000001"),
            ),
            lib(1, "/dev/shm/inject.so", Some(&"e".repeat(64))),
            lib(7, "/dev/shm/inject.so", Some(&"e".repeat(64))),
        ];
        let findings = library_drift(&container(), Some(&sbom), &libs);
        assert_eq!(
            findings,
            [DriftFinding {
                kind: DriftKind::Library,
                pod: "api-7c9f-ktd84".into(),
                container: "api".into(),
                subject: "/dev/shm/inject.so".into(),
                sha256: Some("e".repeat(64)),
                evidence: ev(&[
                    ("procfs.maps", "/dev/shm/inject.so"),
                    ("procfs.pid", "1"),
                    ("procfs.pid", "7"),
                    (
                        "sbom.cyclonedx",
                        "not listed by path or sha256 among 5 components"
                    ),
                ]),
                first_seen: None,
            }]
        );
        assert!(
            library_drift(&container(), None, &libs).is_empty(),
            "no SBOM, no library drift"
        );
    }

    #[test]
    fn filesystem_drift_rules() {
        let created = 1_700_000_000;
        let file = |path: &str, mtime: Option<i64>, upper: bool| ExecutableFile {
            path: path.into(),
            sha256: Some("f".repeat(64)),
            mtime,
            in_writable_layer: upper,
        };
        let files = [
            file("/usr/local/bin/app", Some(created - 10), false),
            file("/usr/local/bin/same-second", Some(created), false),
            file("/usr/local/bin/helper", Some(created + 3600), false),
            file("/tmp/dropper", Some(created - 10), true),
            file("/tmp/both", Some(created + 1), true),
            file("/usr/bin/unknown-mtime", None, false),
        ];
        let findings = filesystem_drift(&container(), Some(created), &files);
        let subjects: Vec<&str> = findings.iter().map(|f| f.subject.as_str()).collect();
        assert_eq!(
            subjects,
            ["/tmp/both", "/tmp/dropper", "/usr/local/bin/helper"]
        );
        assert_eq!(
            findings[0].evidence,
            ev(&[
                ("overlay.upperdir", "/tmp/both"),
                ("fs.mtime", "2023-11-14T22:13:21Z"),
                ("image.created", "2023-11-14T22:13:20Z"),
            ])
        );
        assert_eq!(
            findings[1].evidence,
            ev(&[("overlay.upperdir", "/tmp/dropper")])
        );
        assert_eq!(
            findings[2].evidence,
            ev(&[
                ("fs.mtime", "2023-11-14T23:13:20Z"),
                ("image.created", "2023-11-14T22:13:20Z"),
            ])
        );
        assert_eq!(findings[2].kind, DriftKind::Filesystem);
        assert_eq!(findings[2].sha256, Some("f".repeat(64)));

        // No creation time, or the epoch of a reproducible build: only the writable layer.
        for created in [None, Some(0)] {
            let subjects: Vec<String> = filesystem_drift(&container(), created, &files)
                .into_iter()
                .map(|f| f.subject)
                .collect();
            assert_eq!(subjects, ["/tmp/both", "/tmp/dropper"]);
        }
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    /// Formats an address the way the kernel does (native-endian 32-bit words), so the
    /// tests hold on any architecture.
    fn hex_v4(ip: Ipv4Addr) -> String {
        format!("{:08X}", u32::from_ne_bytes(ip.octets()))
    }

    fn hex_v6(ip: Ipv6Addr) -> String {
        ip.octets()
            .chunks(4)
            .map(|c| format!("{:08X}", u32::from_ne_bytes(c.try_into().unwrap())))
            .collect()
    }

    const TCP_HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";

    fn line(sl: u32, local: &str, remote: &str, st: &str, inode: u64) -> String {
        format!(
            "  {sl:>2}: {local} {remote} {st} 00000000:00000000 00:00000000 00000000  1000        0 {inode} 1 0000000000000000 100 0 0 10 0"
        )
    }

    #[test]
    fn proc_net_tcp_and_garbage() {
        let any = hex_v4(Ipv4Addr::UNSPECIFIED);
        let lo = hex_v4(Ipv4Addr::LOCALHOST);
        let peer = hex_v4(Ipv4Addr::new(10, 0, 0, 7));
        let text = [
            TCP_HEADER.to_string(),
            line(0, &format!("{any}:1F90"), &format!("{any}:0000"), "0A", 111),
            line(1, &format!("{lo}:18EB"), &format!("{any}:0000"), "0A", 112),
            line(2, &format!("{lo}:1F90"), &format!("{peer}:D431"), "01", 113),
            "   3: garbage".to_string(),
            line(4, "ZZZZZZZZ:1F90", &format!("{any}:0000"), "0A", 114),
            line(5, &format!("{any}:1F90"), &format!("{any}:0000"), "XX", 115),
            line(6, &format!("{any}:1F90"), &format!("{any}:0000"), "0A", 0)
                .replace(" 0 1 ", " - 1 "),
            line(7, &format!("{any}1F90"), &format!("{any}:0000"), "0A", 116),
            String::new(),
            "\u{0}\u{ff}".to_string(),
        ]
        .join("\n");
        let sockets = parse_proc_net(NetTable::Tcp, &text);
        assert_eq!(
            sockets,
            [
                Socket {
                    table: NetTable::Tcp,
                    local: "0.0.0.0:8080".parse().unwrap(),
                    remote: "0.0.0.0:0".parse().unwrap(),
                    state: TCP_LISTEN,
                    inode: 111,
                },
                Socket {
                    table: NetTable::Tcp,
                    local: "127.0.0.1:6379".parse().unwrap(),
                    remote: "0.0.0.0:0".parse().unwrap(),
                    state: TCP_LISTEN,
                    inode: 112,
                },
                Socket {
                    table: NetTable::Tcp,
                    local: "127.0.0.1:8080".parse().unwrap(),
                    remote: "10.0.0.7:54321".parse().unwrap(),
                    state: 0x01,
                    inode: 113,
                },
            ]
        );
        assert_eq!(
            sockets.iter().map(Socket::is_listening).collect::<Vec<_>>(),
            [true, true, false]
        );
    }

    /// A line as the kernel of a little-endian machine writes it.
    #[cfg(target_endian = "little")]
    #[test]
    fn proc_net_tcp_literal_line() {
        let text = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 23456 1 0000000000000000 100 0 0 10 0";
        let s = &parse_proc_net(NetTable::Tcp, text)[0];
        assert_eq!(s.local, "127.0.0.1:8080".parse().unwrap());
        let text = "   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 23457 1 0000000000000000 100 0 0 10 0";
        let s = &parse_proc_net(NetTable::Tcp6, text)[0];
        assert_eq!(s.local, "[::1]:80".parse().unwrap());
    }

    #[test]
    fn proc_net_tcp6_udp_udp6() {
        let any6 = hex_v6(Ipv6Addr::UNSPECIFIED);
        let mapped = hex_v6("::ffff:10.1.2.3".parse().unwrap());
        let tcp6 = [
            TCP_HEADER.to_string(),
            line(
                0,
                &format!("{any6}:0050"),
                &format!("{any6}:0000"),
                "0A",
                211,
            ),
            line(
                1,
                &format!("{mapped}:0050"),
                &format!("{mapped}:9C40"),
                "01",
                212,
            ),
            // An IPv6 table line with an IPv4-sized address does not parse.
            line(2, "00000000:0050", &format!("{any6}:0000"), "0A", 213),
        ]
        .join("\n");
        let sockets = parse_proc_net(NetTable::Tcp6, &tcp6);
        assert_eq!(sockets.len(), 2);
        assert_eq!(sockets[0].local, "[::]:80".parse().unwrap());
        assert!(sockets[0].is_listening());
        assert_eq!(
            sockets[1].remote,
            "[::ffff:10.1.2.3]:40000".parse().unwrap()
        );
        assert!(!sockets[1].is_listening());

        let any = hex_v4(Ipv4Addr::UNSPECIFIED);
        let dns = hex_v4(Ipv4Addr::new(10, 96, 0, 10));
        let udp_header = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops";
        let udp = [
            udp_header.to_string(),
            // A DNS server: bound, unconnected.
            line(0, &format!("{any}:0035"), &format!("{any}:0000"), "07", 311),
            // A connected client socket (e.g. to the cluster DNS) is not a server.
            line(1, &format!("{any}:D6D8"), &format!("{dns}:0035"), "01", 312),
            // Unconnected but on no port yet.
            line(2, &format!("{any}:0000"), &format!("{any}:0000"), "07", 313),
        ]
        .join("\n");
        let sockets = parse_proc_net(NetTable::Udp, &udp);
        assert_eq!(
            sockets.iter().map(Socket::is_listening).collect::<Vec<_>>(),
            [true, false, false]
        );
        let udp6 = line(
            0,
            &format!("{any6}:14E9"),
            &format!("{any6}:0000"),
            "07",
            411,
        );
        let sockets = parse_proc_net(NetTable::Udp6, &udp6);
        assert_eq!(sockets[0].local, "[::]:5353".parse().unwrap());
        assert!(sockets[0].is_listening());
    }

    fn listener(table: NetTable, addr: &str, state: u8, inode: u64) -> Socket {
        let remote = if addr.starts_with('[') {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        Socket {
            table,
            local: addr.parse().unwrap(),
            remote: remote.parse().unwrap(),
            state,
            inode,
        }
    }

    #[test]
    fn network_drift_rules() {
        let ports = [
            ContainerPort {
                port: 8080,
                protocol: Protocol::Tcp,
            },
            ContainerPort {
                port: 53,
                protocol: Protocol::Tcp,
            },
        ];
        let sockets = [
            listener(NetTable::Tcp, "0.0.0.0:8080", TCP_LISTEN, 1),
            listener(NetTable::Tcp6, "[::]:8080", TCP_LISTEN, 2),
            // Declared for TCP only: a UDP server on it is drift.
            listener(NetTable::Udp, "0.0.0.0:53", TCP_CLOSE, 3),
            // Allowed by the policy.
            listener(NetTable::Tcp, "0.0.0.0:9090", TCP_LISTEN, 4),
            // Not declared, on both stacks: one finding.
            listener(NetTable::Tcp, "0.0.0.0:4444", TCP_LISTEN, 5),
            listener(NetTable::Tcp6, "[::]:4444", TCP_LISTEN, 6),
            // Not listening.
            listener(NetTable::Tcp, "0.0.0.0:5555", 0x01, 7),
        ];
        let findings = network_drift(&container(), &ports, &[9090], &sockets);
        assert_eq!(
            findings,
            [
                DriftFinding {
                    kind: DriftKind::Network,
                    pod: "api-7c9f-ktd84".into(),
                    container: "api".into(),
                    subject: "tcp/4444".into(),
                    sha256: None,
                    evidence: ev(&[
                        ("procfs.net.tcp", "0.0.0.0:4444 (inode 5)"),
                        ("procfs.net.tcp6", "[::]:4444 (inode 6)"),
                        ("k8s.pod.containerPorts", "tcp/8080, tcp/53"),
                        ("policy.allowedListeningPorts", "9090"),
                    ]),
                    first_seen: None,
                },
                DriftFinding {
                    kind: DriftKind::Network,
                    pod: "api-7c9f-ktd84".into(),
                    container: "api".into(),
                    subject: "udp/53".into(),
                    sha256: None,
                    evidence: ev(&[
                        ("procfs.net.udp", "0.0.0.0:53 (inode 3)"),
                        ("k8s.pod.containerPorts", "tcp/8080, tcp/53"),
                        ("policy.allowedListeningPorts", "9090"),
                    ]),
                    first_seen: None,
                },
            ]
        );
        let none = network_drift(&container(), &[], &[], &sockets[3..4]);
        assert_eq!(
            none[0].evidence[1..],
            ev(&[
                ("k8s.pod.containerPorts", "none"),
                ("policy.allowedListeningPorts", "none"),
            ])
        );
    }

    #[test]
    fn kubernetes_protocols() {
        assert_eq!(Protocol::from_k8s(None), Some(Protocol::Tcp));
        assert_eq!(Protocol::from_k8s(Some("UDP")), Some(Protocol::Udp));
        assert_eq!(Protocol::from_k8s(Some("SCTP")), Some(Protocol::Sctp));
        assert_eq!(Protocol::from_k8s(Some("udp")), None);
        assert_eq!(
            NetTable::ALL.map(NetTable::file_name),
            ["tcp", "tcp6", "udp", "udp6"]
        );
    }

    fn everything() -> (Baseline, Observed) {
        let baseline = Baseline {
            terminals: strings(&["/app"]),
            allowed_programs: Vec::new(),
            sbom: Some(Arc::new(parse_cyclonedx(SBOM).unwrap())),
            image_created: Some(1_700_000_000),
            container_ports: Vec::new(),
            allowed_listening_ports: Vec::new(),
        };
        let observed = Observed {
            processes: vec![process(9, "/tmp/miner", None)],
            libraries: vec![lib(9, "/tmp/miner.so", None)],
            executables: vec![ExecutableFile {
                path: "/tmp/miner".into(),
                sha256: None,
                mtime: None,
                in_writable_layer: true,
            }],
            sockets: vec![listener(NetTable::Tcp, "0.0.0.0:3333", TCP_LISTEN, 9)],
        };
        (baseline, observed)
    }

    #[test]
    fn detect_all_kinds_in_order() {
        let (baseline, observed) = everything();
        let kinds: Vec<DriftKind> =
            detect(&container(), &DriftKinds::default(), &baseline, &observed)
                .into_iter()
                .map(|f| f.kind)
                .collect();
        assert_eq!(
            kinds,
            [
                DriftKind::Process,
                DriftKind::Library,
                DriftKind::Filesystem,
                DriftKind::Network
            ]
        );
    }

    #[test]
    fn disabled_kinds_are_not_reported() {
        let (baseline, observed) = everything();
        let all_off = DriftKinds {
            process: false,
            library: false,
            filesystem: false,
            network: false,
        };
        assert!(detect(&container(), &all_off, &baseline, &observed).is_empty());
        let only = |kind: DriftKind| {
            let kinds = DriftKinds {
                process: kind == DriftKind::Process,
                library: kind == DriftKind::Library,
                filesystem: kind == DriftKind::Filesystem,
                network: kind == DriftKind::Network,
            };
            detect(&container(), &kinds, &baseline, &observed)
                .into_iter()
                .map(|f| f.kind)
                .collect::<Vec<_>>()
        };
        for kind in [
            DriftKind::Process,
            DriftKind::Library,
            DriftKind::Filesystem,
            DriftKind::Network,
        ] {
            assert_eq!(only(kind), [kind]);
        }
    }
}
