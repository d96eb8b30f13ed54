//! `/proc/<pid>/net/{tcp,tcp6,udp,udp6}` of a hostile network namespace: any text parses to
//! sockets, one per line at most, each line's own address family.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zastava_observer::drift::{parse_proc_net, NetTable};

fuzz_target!(|text: &str| {
    for table in NetTable::ALL {
        let sockets = parse_proc_net(table, text);
        assert!(sockets.len() <= text.lines().count());
        for socket in &sockets {
            assert_eq!(socket.table, table);
            let v6 = matches!(table, NetTable::Tcp6 | NetTable::Udp6);
            assert_eq!(socket.local.is_ipv6(), v6);
            assert_eq!(socket.remote.is_ipv6(), v6);
            let _ = socket.is_listening();
        }
    }
});
