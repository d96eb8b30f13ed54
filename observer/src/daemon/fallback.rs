//! The inventory when the container runtime's CRI socket cannot be reached: the Pods the
//! Kubernetes API schedules on this node, their running containers from the pod status, and
//! each container's main process found through `/proc/<pid>/cgroup` (the runtime puts every
//! container in a cgroup named after its id).
//!
//! What is lost without the runtime: the image configuration (entrypoint, creation time) and
//! the argv the runtime started the process with. The daemon then traces the pod spec's
//! command, or the main process's command line, and says in each posture that the inventory
//! came from the API.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use procfs::FromRead;

use k8s_openapi::api::core::v1::Pod;

use crate::cri::{digest_of, ContainerDetails, RuntimeContainer};

/// A running container as the pod status reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiContainer {
    pub container: RuntimeContainer,
    pub details: ContainerDetails,
    /// The runtime named in the container id (`containerd` of `containerd://<id>`).
    pub engine: String,
}

/// The running containers of `pods` by runtime container id. Containers without an id or
/// not running yet are left out: the next listing sees them.
pub fn running_containers<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
) -> BTreeMap<String, ApiContainer> {
    let mut running = BTreeMap::new();
    for pod in pods {
        let (Some(namespace), Some(name), Some(uid)) = (
            pod.metadata.namespace.as_ref(),
            pod.metadata.name.as_ref(),
            pod.metadata.uid.as_ref(),
        ) else {
            continue;
        };
        let statuses = pod.status.iter().flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        });
        for status in statuses {
            let Some(started) = status
                .state
                .as_ref()
                .and_then(|s| s.running.as_ref())
                .map(|r| r.started_at.as_ref())
            else {
                continue;
            };
            let Some((engine, id)) = status.container_id.as_deref().and_then(runtime_id) else {
                continue;
            };
            running.insert(
                id.to_string(),
                ApiContainer {
                    container: RuntimeContainer {
                        id: id.to_string(),
                        namespace: namespace.clone(),
                        pod: name.clone(),
                        pod_uid: uid.clone(),
                        container: status.name.clone(),
                        attempt: u32::try_from(status.restart_count).unwrap_or(0),
                        image: status.image_id.clone(),
                    },
                    details: ContainerDetails {
                        image_ref: status.image.clone(),
                        image_digest: digest_of(&status.image_id),
                        image_id: status.image_id.clone(),
                        pid: None,
                        started_at: started.map(|t| t.0.as_nanosecond() as i64),
                        args: Vec::new(),
                    },
                    engine: engine.to_string(),
                },
            );
        }
    }
    running
}

/// Every process's (pid, parent pid, cgroup file text) under `proc_root`; processes that
/// exit meanwhile, or whose files cannot be read, are left out.
pub fn scan(proc_root: &Path) -> Vec<(u32, u32, String)> {
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).ok()?;
            let stat = std::fs::File::open(entry.path().join("stat")).ok()?;
            let ppid = procfs::process::Stat::from_read(stat).ok()?.ppid;
            Some((pid, u32::try_from(ppid).ok()?, cgroup))
        })
        .collect()
}

/// `containerd://<hex>` → (`containerd`, `<hex>`); `None` for anything else.
pub fn runtime_id(container_id: &str) -> Option<(&str, &str)> {
    let (engine, id) = container_id.split_once("://")?;
    (!engine.is_empty() && id.len() >= 12 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some((engine, id))
}

/// The main process of each container id among `processes` (pid, parent pid, cgroup file
/// text): of the processes whose cgroup path names the id, the one whose parent is not one of
/// them (the container's init; `kubectl exec` processes are children of the runtime's shim,
/// so the lowest such pid wins — the init is started first).
pub fn main_pids<'a>(
    ids: impl IntoIterator<Item = &'a str>,
    processes: &[(u32, u32, String)],
) -> HashMap<String, u32> {
    let mut found = HashMap::new();
    for id in ids {
        let members: HashSet<u32> = processes
            .iter()
            .filter(|(_, _, cgroup)| names_container(cgroup, id))
            .map(|(pid, _, _)| *pid)
            .collect();
        let main = processes
            .iter()
            .filter(|(pid, ppid, _)| members.contains(pid) && !members.contains(ppid))
            .map(|(pid, _, _)| *pid)
            .min();
        if let Some(pid) = main {
            found.insert(id.to_string(), pid);
        }
    }
    found
}

/// Whether a `/proc/<pid>/cgroup` text puts the process in the cgroup of container `id`: a
/// path component that is the id (cgroupfs: `/kubepods/pod<uid>/<id>`) or ends in it
/// (systemd: `cri-containerd-<id>.scope`).
fn names_container(cgroup: &str, id: &str) -> bool {
    cgroup.lines().any(|line| {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        path.split('/').any(|component| {
            let component = component.strip_suffix(".scope").unwrap_or(component);
            component == id || component.ends_with(&format!("-{id}"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const ID_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn running_containers_of_the_pod_status() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1"},
            "status": {
                "containerStatuses": [
                    {
                        "name": "app", "ready": true, "restartCount": 2,
                        "image": "registry.local/shop/web:1.2",
                        "imageID": format!("registry.local/shop/web@sha256:{}", "c".repeat(64)),
                        "containerID": format!("containerd://{ID_A}"),
                        "state": {"running": {"startedAt": "2026-11-22T10:00:00Z"}}
                    },
                    {
                        "name": "waiting", "ready": false, "restartCount": 0,
                        "image": "x", "imageID": "",
                        "state": {"waiting": {"reason": "ContainerCreating"}}
                    },
                    {
                        "name": "odd", "ready": true, "restartCount": 0,
                        "image": "x", "imageID": "", "containerID": "garbage",
                        "state": {"running": {}}
                    }
                ]
            }
        }))
        .unwrap();
        let no_uid: Pod = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
        let running = running_containers([&pod, &no_uid]);
        assert_eq!(running.len(), 1, "{running:?}");
        let c = &running[ID_A];
        assert_eq!(c.engine, "containerd");
        assert_eq!(
            (c.container.namespace.as_str(), c.container.pod.as_str()),
            ("shop", "web-1")
        );
        assert_eq!(c.container.pod_uid, "u-1");
        assert_eq!(c.container.container, "app");
        assert_eq!(c.container.attempt, 2);
        assert_eq!(c.details.image_ref, "registry.local/shop/web:1.2");
        assert_eq!(
            c.details.image_digest,
            Some(format!("sha256:{}", "c".repeat(64)))
        );
        assert_eq!(c.details.started_at, Some(1_795_341_600_000_000_000));
        assert_eq!(c.details.pid, None);
    }

    #[test]
    fn container_ids() {
        assert_eq!(
            runtime_id(&format!("containerd://{ID_A}")),
            Some(("containerd", ID_A))
        );
        assert_eq!(
            runtime_id("cri-o://0123456789abcdef"),
            Some(("cri-o", "0123456789abcdef"))
        );
        assert_eq!(runtime_id(ID_A), None);
        assert_eq!(runtime_id("containerd://short"), None);
        assert_eq!(runtime_id("://0123456789abcdef"), None);
    }

    #[test]
    fn main_processes_from_cgroups() {
        let cgroupfs = |id: &str| format!("12:memory:/kubepods/podu-1/{id}\n0::/\n");
        let systemd =
            |id: &str| format!("0::/kubepods.slice/kubepods-pod.slice/cri-containerd-{id}.scope\n");
        let processes = vec![
            (1, 0, "0::/init.scope\n".to_string()),
            (500, 1, "0::/system.slice/containerd.service\n".to_string()),
            // Container A: init 510 (child of the shim 505), its child 511, and a
            // `kubectl exec` process 520, also a child of the shim.
            (505, 1, "0::/system.slice/containerd.service\n".to_string()),
            (510, 505, cgroupfs(ID_A)),
            (511, 510, cgroupfs(ID_A)),
            (520, 505, cgroupfs(ID_A)),
            (610, 600, systemd(ID_B)),
        ];
        let found = main_pids([ID_A, ID_B, "c".repeat(64).as_str()], &processes);
        assert_eq!(found.get(ID_A), Some(&510));
        assert_eq!(found.get(ID_B), Some(&610));
        assert_eq!(found.len(), 2, "no process, no pid: {found:?}");
        // A prefix of an id is not the id.
        assert!(!names_container(&cgroupfs(ID_A), &ID_A[..12]));
        assert!(!names_container("garbage without colons", ID_A));
    }
}
