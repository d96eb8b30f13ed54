//! The node observer without the runtime's CRI socket: restarted with a socket path that does
//! not exist, it inventories the node's containers from the Kubernetes API and finds their
//! processes through `/proc/<pid>/cgroup`, says so in the posture and in a metric, and still
//! samples, traces and reports drift. (A test binary of its own: it restarts the observer the
//! other tests use, and test binaries run one after another.)

use std::time::Duration;

use serde_json::json;
use zastava_crds::posture::Inventory;
use zastava_e2e::observer::{
    deploy, node_entry, observer_ctl, run_dropped_program, running_pod, RestoreObserver,
};
use zastava_e2e::{client, create_namespace, delete_namespace, env, http_get, metric, unique};

#[tokio::test]
async fn inventory_from_the_api_without_a_cri_socket() {
    let _restore = RestoreObserver;
    observer_ctl("stop", &[]);
    observer_ctl(
        "start",
        &[(
            "ZASTAVA_OBSERVER_CRI_SOCKET",
            "/nonexistent/zastava-e2e/cri.sock",
        )],
    );
    let url = env("ZASTAVA_OBSERVER_URL");
    let (_, metrics) = http_get(&format!("{url}/metrics")).await.unwrap();
    assert_eq!(
        metric(&metrics, "zastava_observer_inventory_fallback"),
        Some(1.0),
        "{metrics}"
    );

    let client = client().await;
    let ns = unique("e2e-obs-api");
    create_namespace(&client, &ns, json!({})).await;
    deploy(&client, &ns, "sleeper", &["sleep", "3600"]).await;
    let pod = running_pod(&client, &ns, "sleeper").await;
    let pod_name = pod.metadata.name.clone().unwrap();
    let (_, entry) = node_entry(
        &client,
        &ns,
        "deployment-sleeper",
        "the container, inventoried from the API",
        Duration::from_secs(60),
        |e| e.containers.iter().any(|c| c.pod == pod_name) && !e.processes.is_empty(),
    )
    .await;
    assert_eq!(entry.inventory, Some(Inventory::KubernetesApi));
    let c = &entry.containers[0];
    assert_eq!(c.image_digest, Some(env("ZASTAVA_TEST_IMAGE_DIGEST")));
    let status_id = pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .container_id
        .clone()
        .unwrap();
    assert_eq!(status_id, format!("containerd://{}", c.container_id));
    // The pid found through the cgroups is the container's main process.
    let pid = c
        .pid
        .expect("the main process found through /proc/<pid>/cgroup");
    assert_eq!(
        std::fs::read(format!("/proc/{pid}/cmdline")).unwrap(),
        b"sleep\x003600\x00"
    );
    // The entry trace starts from the pod spec's command.
    let process = &entry.processes[0];
    assert_eq!(process.pid, pid);
    assert!(
        process.terminals.iter().any(|t| t.ends_with("/sleep")),
        "{process:?}"
    );

    // Drift is still seen.
    run_dropped_program(&client, &ns, &pod_name, "deployment-sleeper", "/tmp/sleep").await;

    delete_namespace(&client, &ns).await;
}
