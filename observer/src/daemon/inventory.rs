//! Container starts and stops, from two successive listings of the running containers.
//!
//! containerd 1.6 has no CRI event stream, so the observer lists the running containers
//! every interval and diffs the list with what it tracks: a container restarted by kubelet
//! is a new container id, so it shows as one stop and one start.

use std::collections::{BTreeMap, BTreeSet};

use crate::cri::RuntimeContainer;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Running now, not tracked yet (sorted).
    pub started: Vec<String>,
    /// Tracked, not running any more (sorted).
    pub stopped: Vec<String>,
}

/// What changed between the tracked container ids and the containers running now, leaving
/// out those of Zastava's own namespace (never reported).
pub fn diff<'a>(
    tracked: impl IntoIterator<Item = &'a String>,
    running: &BTreeMap<String, RuntimeContainer>,
    own_namespace: &str,
) -> Changes {
    let tracked: BTreeSet<&String> = tracked.into_iter().collect();
    let running: BTreeMap<&String, &RuntimeContainer> = running
        .iter()
        .filter(|(_, c)| c.namespace != own_namespace)
        .collect();
    Changes {
        started: running
            .keys()
            .filter(|id| !tracked.contains(*id))
            .map(|id| id.to_string())
            .collect(),
        stopped: tracked
            .iter()
            .filter(|id| !running.contains_key(*id))
            .map(|id| id.to_string())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(containers: &[(&str, &str)]) -> BTreeMap<String, RuntimeContainer> {
        containers
            .iter()
            .map(|(id, ns)| {
                (
                    id.to_string(),
                    RuntimeContainer {
                        id: id.to_string(),
                        namespace: ns.to_string(),
                        pod: "p".into(),
                        pod_uid: "u".into(),
                        container: "c".into(),
                        attempt: 0,
                        image: "sha256:1".into(),
                    },
                )
            })
            .collect()
    }

    fn ids(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn starts_and_stops() {
        let tracked = ids(&["a", "b", "c"]);
        let now = running(&[("b", "team"), ("d", "team"), ("c", "team"), ("0", "team")]);
        assert_eq!(
            diff(&tracked, &now, "zastava-system"),
            Changes {
                started: ids(&["0", "d"]),
                stopped: ids(&["a"]),
            }
        );
        assert_eq!(
            diff(&ids(&["b", "c", "d", "0"]), &now, "zastava-system"),
            Changes::default()
        );
        assert_eq!(
            diff(&tracked, &BTreeMap::new(), "zastava-system").stopped,
            tracked
        );
    }

    #[test]
    fn zastava_namespace_is_never_tracked() {
        let now = running(&[("own", "zastava-system"), ("app", "team")]);
        assert_eq!(
            diff(&Vec::new(), &now, "zastava-system"),
            Changes {
                started: ids(&["app"]),
                stopped: Vec::new(),
            }
        );
    }
}
