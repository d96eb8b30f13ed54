//! The socket tables of the node's network namespaces, read once per namespace and again only
//! when the namespace changed.
//!
//! `/proc/<pid>/net/tcp{,6}` costs the same whatever the namespace holds: the kernel walks the
//! node-wide established-connection hash (262 144 buckets on a 24 GiB machine: ~3.6 ms a
//! table) and keeps the sockets of the namespace. Read for every container every drift round,
//! that was most of the observer's CPU. So each namespace's tables are kept ([`NetNamespaces`])
//! and read again only when one of these changed:
//! - its counters in `/proc/<pid>/net/sockstat{,6}` (per namespace: sockets in use, TCP and UDP
//!   sockets hashed, v4 and v6): a `listen()`, a `bind()`, a connection made or closed, a
//!   socket created or closed changes them;
//! - a container of the namespace holds a socket the last read did not account for (a new
//!   socket, or one of another container of the same pod);
//! - the kept tables are older than a refresh period (about five minutes, spread per
//!   namespace so that not all of them are read in the same round).
//!
//! What this can miss until the refresh: in one drift interval, a socket that was open but
//! unbound when the tables were read starts listening while another socket of the namespace
//! stops listening or is disconnected without being closed, so that no counter moves. A
//! namespace with more sockets than [`MAX_KEPT_SOCKETS`] is not kept (busy namespaces change
//! every round anyway): it is read every round, as before.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::drift::{parse_proc_net, NetTable, Socket};
use crate::limits::{MAX_NET_BYTES, MAX_NET_ENTRIES};
use crate::sample::read_capped;

/// Kept tables are read again after this, give or take a fifth (per namespace).
pub const REFRESH: Duration = Duration::from_secs(300);
/// Namespaces with more sockets than this are read every round rather than kept.
pub const MAX_KEPT_SOCKETS: usize = 1024;
/// Bytes of `sockstat` or `sockstat6` read (a few lines).
const MAX_SOCKSTAT_BYTES: u64 = 4096;

/// The sockets of one namespace's tables, and what was cut short by a cap.
#[derive(Clone, Debug, Default)]
pub struct Tables {
    pub sockets: Vec<Socket>,
    /// One message per table a cap cut short.
    pub capped: Vec<String>,
    /// Tables that could not be read (other than those the kernel does not have).
    pub errors: Vec<String>,
}

/// The per-namespace counters whose change means the tables may have changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Counters(Vec<(String, u64)>);

struct Kept {
    counters: Counters,
    tables: Tables,
    /// Socket inodes of the namespace's containers that were in no table when it was read
    /// (Unix and netlink sockets, unbound ones): accounted for, as long as the counters hold.
    elsewhere: BTreeSet<u64>,
    refresh_at: Instant,
    /// The round that last asked (namespaces nobody asked for in a round are forgotten).
    round: u64,
}

/// The node's network namespaces' kept tables; shared by the drift rounds.
#[derive(Default)]
pub struct NetNamespaces {
    kept: Mutex<HashMap<u64, Kept>>,
    round: Mutex<u64>,
    reads: Mutex<u64>,
}

impl NetNamespaces {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a drift round: namespaces no container asked for in the last one are forgotten.
    pub fn begin_round(&self) {
        let mut round = self.round.lock().unwrap_or_else(PoisonError::into_inner);
        let last = *round;
        *round += 1;
        self.kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, k| k.round >= last);
    }

    /// How many times tables were read (not kept ones reused): for the tests and metrics.
    pub fn reads(&self) -> u64 {
        *self.reads.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The sockets among `inodes` (a container's socket inodes) in the tables of the network
    /// namespace of `pid`, read through `<proc>/<pid>/net/`, or kept from an earlier read
    /// when nothing says they changed.
    pub fn sockets(&self, proc_root: &Path, pid: u32, inodes: &BTreeSet<u64>) -> Tables {
        let dir = proc_root.join(pid.to_string());
        let round = *self.round.lock().unwrap_or_else(PoisonError::into_inner);
        // Without a namespace identity or counters, nothing can be kept: read.
        let (Some(netns), Some(counters)) = (namespace(&dir), counters(&dir)) else {
            return filtered(&self.read(&dir), inodes);
        };
        let now = Instant::now();
        {
            let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(k) = kept.get_mut(&netns) {
                let accounted = inodes.iter().all(|i| {
                    k.elsewhere.contains(i) || k.tables.sockets.iter().any(|s| s.inode == *i)
                });
                if k.counters == counters && now < k.refresh_at && accounted {
                    k.round = round;
                    return filtered(&k.tables, inodes);
                }
            }
        }
        let tables = self.read(&dir);
        let found = filtered(&tables, inodes);
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if tables.sockets.len() > MAX_KEPT_SOCKETS
            || !tables.capped.is_empty()
            || !tables.errors.is_empty()
        {
            kept.remove(&netns);
            return found;
        }
        let in_tables: BTreeSet<u64> = tables.sockets.iter().map(|s| s.inode).collect();
        let mut elsewhere: BTreeSet<u64> =
            kept.remove(&netns).map(|k| k.elsewhere).unwrap_or_default();
        elsewhere.extend(inodes.iter().copied());
        elsewhere.retain(|i| !in_tables.contains(i));
        if elsewhere.len() <= MAX_KEPT_SOCKETS {
            kept.insert(
                netns,
                Kept {
                    counters,
                    tables,
                    elsewhere,
                    refresh_at: now + spread(REFRESH, netns),
                    round,
                },
            );
        }
        found
    }

    fn read(&self, dir: &Path) -> Tables {
        *self.reads.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        read_tables(dir)
    }
}

/// The tcp, tcp6, udp and udp6 tables under `<dir>/net/`, each within [`MAX_NET_BYTES`] and
/// [`MAX_NET_ENTRIES`].
pub fn read_tables(dir: &Path) -> Tables {
    let mut out = Tables::default();
    for table in NetTable::ALL {
        let path = dir.join("net").join(table.file_name());
        match read_capped(&path, MAX_NET_BYTES) {
            Ok((text, whole)) => {
                let text = String::from_utf8_lossy(&text);
                // Cut short by the cap: the last line may be cut too.
                let text = match whole {
                    true => &text[..],
                    false => text.rsplit_once('\n').map_or("", |(lines, _)| lines),
                };
                let mut sockets = parse_proc_net(table, text);
                if !whole || sockets.len() > MAX_NET_ENTRIES {
                    sockets.truncate(MAX_NET_ENTRIES);
                    out.capped.push(format!(
                        "{}: more than {MAX_NET_ENTRIES} sockets or {MAX_NET_BYTES} bytes: only \
                         the first {} are looked at (cap)",
                        path.display(),
                        sockets.len()
                    ));
                }
                out.sockets.extend(sockets);
            }
            // No IPv6 in the kernel: no tcp6/udp6 tables.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => out.errors.push(format!("{}: {e}", path.display())),
        }
    }
    out
}

/// The tables with only the sockets whose inode is among `inodes`.
fn filtered(tables: &Tables, inodes: &BTreeSet<u64>) -> Tables {
    Tables {
        sockets: tables
            .sockets
            .iter()
            .filter(|s| inodes.contains(&s.inode))
            .cloned()
            .collect(),
        capped: tables.capped.clone(),
        errors: tables.errors.clone(),
    }
}

/// The inode of the network namespace `<dir>/ns/net` names (`net:[4026531840]`).
fn namespace(dir: &Path) -> Option<u64> {
    let link = std::fs::read_link(dir.join("ns/net")).ok()?;
    link.to_str()?
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The per-namespace counters of `<dir>/net/sockstat` and `sockstat6`; `None` when they
/// cannot be read.
fn counters(dir: &Path) -> Option<Counters> {
    let mut text = String::new();
    for name in ["sockstat", "sockstat6"] {
        match read_capped(&dir.join("net").join(name), MAX_SOCKSTAT_BYTES) {
            Ok((bytes, true)) => text.push_str(&String::from_utf8_lossy(&bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound && name == "sockstat6" => {}
            _ => return None,
        }
    }
    Some(parse_counters(&text))
}

/// From `sockstat` lines (`TCP: inuse 5 orphan 0 tw 2 alloc 7 mem 1`), the counters that
/// belong to the namespace: `sockets: used` and the `inuse` of TCP, UDP, TCP6 and UDP6. The
/// others (`alloc`, `mem`, `orphan`) are node-wide and would make every namespace look
/// changed whenever any changed; `tw` counts sockets no process holds.
fn parse_counters(text: &str) -> Counters {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((proto, fields)) = line.split_once(':') else {
            continue;
        };
        let wanted = match proto {
            "sockets" => "used",
            "TCP" | "UDP" | "TCP6" | "UDP6" => "inuse",
            _ => continue,
        };
        let fields: Vec<&str> = fields.split_whitespace().collect();
        for pair in fields.chunks(2) {
            if let [name, value] = pair {
                if *name == wanted {
                    if let Ok(v) = value.parse() {
                        out.push((proto.to_string(), v));
                    }
                }
            }
        }
    }
    Counters(out)
}

/// `period` give or take a fifth, the same for one namespace each time: namespaces read in
/// the same round are not all read again in the same later round.
fn spread(period: Duration, netns: u64) -> Duration {
    // A multiplicative hash of the inode, in [0, 1).
    let unit = (netns.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
    period.mul_f64(0.8 + 0.4 * unit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::fs;

    const SOCKSTAT: &str = "sockets: used 12\nTCP: inuse 2 orphan 0 tw 3 alloc 9 mem 1\n\
        UDP: inuse 1 mem 0\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n";
    const SOCKSTAT6: &str = "TCP6: inuse 1\nUDP6: inuse 0\nUDPLITE6: inuse 0\nRAW6: inuse 0\n";

    fn tcp_line(port: u16, state: &str, inode: u64) -> String {
        format!(
            "   0: 00000000:{port:04X} 00000000:0000 {state} 00000000:00000000 00:00000000 \
             00000000     0        0 {inode} 1 0000000000000000 100 0 0 10 0\n"
        )
    }

    /// A fake `<proc>/<pid>` with a namespace link, counters and a tcp table.
    fn fake(root: &Path, pid: u32, netns: u64, sockstat: &str, tcp: &str) {
        let dir = root.join(pid.to_string());
        fs::create_dir_all(dir.join("net")).unwrap();
        fs::create_dir_all(dir.join("ns")).unwrap();
        let link = dir.join("ns/net");
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("net:[{netns}]"), &link).unwrap();
        fs::write(dir.join("net/sockstat"), sockstat).unwrap();
        fs::write(dir.join("net/sockstat6"), SOCKSTAT6).unwrap();
        let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
        fs::write(dir.join("net/tcp"), format!("{header}{tcp}")).unwrap();
    }

    fn set(inodes: &[u64]) -> BTreeSet<u64> {
        inodes.iter().copied().collect()
    }

    #[test]
    fn only_the_namespace_counters_are_compared() {
        let c = parse_counters(&format!("{SOCKSTAT}{SOCKSTAT6}"));
        assert_eq!(
            c.0,
            vec![
                ("sockets".to_string(), 12),
                ("TCP".to_string(), 2),
                ("UDP".to_string(), 1),
                ("TCP6".to_string(), 1),
                ("UDP6".to_string(), 0),
            ]
        );
        // The node-wide alloc and mem, and tw, may move without a re-read.
        let busier = SOCKSTAT.replace("tw 3 alloc 9 mem 1", "tw 7 alloc 90 mem 4");
        assert_eq!(c, parse_counters(&format!("{busier}{SOCKSTAT6}")));
        assert_eq!(
            parse_counters("garbage\nTCP: inuse x\n:"),
            Counters::default()
        );
    }

    #[test]
    fn a_namespace_is_read_once_while_nothing_changes() {
        let tmp = TempDir::new("netns-kept");
        // Two containers of one pod (one namespace), one of another pod.
        fake(tmp.path(), 10, 7, SOCKSTAT, &tcp_line(8080, "0A", 100));
        fake(tmp.path(), 11, 7, SOCKSTAT, &tcp_line(8080, "0A", 100));
        fake(tmp.path(), 20, 8, SOCKSTAT, "");
        let nets = NetNamespaces::new();
        for _ in 0..3 {
            nets.begin_round();
            let found = nets.sockets(tmp.path(), 10, &set(&[100, 555]));
            assert_eq!(found.sockets.len(), 1);
            assert_eq!(found.sockets[0].local.port(), 8080);
            // 555 (a Unix socket, say) is in no table: accounted for once read.
            assert!(nets
                .sockets(tmp.path(), 11, &set(&[555]))
                .sockets
                .is_empty());
            assert!(nets.sockets(tmp.path(), 20, &set(&[])).sockets.is_empty());
        }
        assert_eq!(nets.reads(), 2, "one read per namespace");
    }

    #[test]
    fn a_new_listener_or_socket_is_read_at_once() {
        let tmp = TempDir::new("netns-changes");
        fake(tmp.path(), 10, 7, SOCKSTAT, "");
        let nets = NetNamespaces::new();
        nets.begin_round();
        assert!(nets
            .sockets(tmp.path(), 10, &set(&[300]))
            .sockets
            .is_empty());
        // Socket 300 (unbound when read) listens: TCP inuse moves.
        let listening = SOCKSTAT.replace("TCP: inuse 2", "TCP: inuse 3");
        fake(tmp.path(), 10, 7, &listening, &tcp_line(9999, "0A", 300));
        nets.begin_round();
        let found = nets.sockets(tmp.path(), 10, &set(&[300]));
        assert_eq!(found.sockets.len(), 1, "{found:?}");
        assert_eq!(nets.reads(), 2);
        // A socket the last read did not account for (a new fd), counters as they were.
        fake(
            tmp.path(),
            10,
            7,
            &listening,
            &(tcp_line(9999, "0A", 300) + &tcp_line(7000, "0A", 301)),
        );
        nets.begin_round();
        let found = nets.sockets(tmp.path(), 10, &set(&[300, 301]));
        assert_eq!(found.sockets.len(), 2, "{found:?}");
        assert_eq!(nets.reads(), 3);
    }

    #[test]
    fn without_counters_or_namespace_every_call_reads() {
        let tmp = TempDir::new("netns-unknown");
        fake(tmp.path(), 10, 7, SOCKSTAT, &tcp_line(80, "0A", 1));
        fs::remove_file(tmp.join("10/net/sockstat")).unwrap();
        let nets = NetNamespaces::new();
        for _ in 0..2 {
            nets.begin_round();
            assert_eq!(nets.sockets(tmp.path(), 10, &set(&[1])).sockets.len(), 1);
        }
        assert_eq!(nets.reads(), 2);
    }

    #[test]
    fn namespaces_no_one_asks_for_are_forgotten() {
        let tmp = TempDir::new("netns-forgotten");
        fake(tmp.path(), 10, 7, SOCKSTAT, "");
        let nets = NetNamespaces::new();
        nets.begin_round();
        nets.sockets(tmp.path(), 10, &set(&[]));
        nets.begin_round();
        nets.begin_round();
        assert!(nets.kept.lock().unwrap().is_empty());
    }

    #[test]
    fn refreshes_are_spread_within_a_fifth() {
        let all: Vec<Duration> = (4026531840u64..4026532840)
            .map(|n| spread(REFRESH, n))
            .collect();
        assert!(all
            .iter()
            .all(|d| *d >= REFRESH.mul_f64(0.8) && *d < REFRESH.mul_f64(1.2)));
        let below = all.iter().filter(|d| **d < REFRESH).count();
        assert!(
            (300..700).contains(&below),
            "{below} of 1000 below the period"
        );
    }
}
