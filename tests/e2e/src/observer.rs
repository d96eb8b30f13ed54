//! Helpers of the observer's end-to-end tests: workloads to observe, this node's entry of
//! their postures, and the observer restarted with other settings (`tests/e2e/observer.sh`).

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use zastava_crds::posture::{DriftFinding, DriftKind, NodeObservation};
use zastava_crds::RuntimePosture;

use crate::{env, wait_for};

/// Creates a one-replica Deployment `name` of the test image running `command`.
pub async fn deploy(client: &Client, ns: &str, name: &str, command: &[&str]) -> Deployment {
    deploy_image(client, ns, name, &env("ZASTAVA_TEST_IMAGE"), command).await
}

/// Creates a one-replica Deployment `name` of `image` running `command`, retrying while the
/// webhook of the shared cluster restarts ("failed calling webhook").
pub async fn deploy_image(
    client: &Client,
    ns: &str,
    name: &str,
    image: &str,
    command: &[&str],
) -> Deployment {
    deploy_containers(
        client,
        ns,
        name,
        json!([{ "name": "app", "image": image, "command": command }]),
    )
    .await
}

/// Creates a one-replica Deployment `name` whose pod runs `containers` (a JSON list of
/// container specs), retrying as [`deploy_image`] does.
pub async fn deploy_containers(
    client: &Client,
    ns: &str,
    name: &str,
    containers: serde_json::Value,
) -> Deployment {
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": ns },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": containers,
                },
            },
        },
    }))
    .unwrap();
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("Deployment {ns}/{name} to be created"),
        Duration::from_secs(60),
        || async {
            match api.create(&PostParams::default(), &deployment).await {
                Ok(d) => Some(d),
                Err(e) if e.to_string().contains("failed calling webhook") => None,
                Err(e) => panic!("creating Deployment {name}: {e}"),
            }
        },
    )
    .await
}

/// The running Pod of a Deployment (pods are retried by the ReplicaSet should the webhook
/// refuse them for a moment).
pub async fn running_pod(client: &Client, ns: &str, app: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("a running Pod of {ns}/{app}"),
        Duration::from_secs(120),
        || async {
            let list = pods
                .list(&ListParams::default().labels(&format!("app={app}")))
                .await
                .ok()?;
            list.items.into_iter().find(|p| {
                p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    && p.metadata.deletion_timestamp.is_none()
            })
        },
    )
    .await
}

/// This node's entry of a posture, once `accept` takes it.
pub async fn node_entry(
    client: &Client,
    ns: &str,
    posture: &str,
    what: &str,
    timeout: Duration,
    accept: impl Fn(&NodeObservation) -> bool,
) -> (RuntimePosture, NodeObservation) {
    let api: Api<RuntimePosture> = Api::namespaced(client.clone(), ns);
    let node = env("ZASTAVA_NODE");
    wait_for(
        &format!("RuntimePosture {ns}/{posture}: {what}"),
        timeout,
        || async {
            let p = api.get_opt(posture).await.ok()??;
            let entry = p
                .status
                .as_ref()?
                .nodes
                .iter()
                .find(|n| n.node == node)
                .cloned()?;
            accept(&entry).then_some((p, entry))
        },
    )
    .await
}

/// A posture once its `Compliant` condition's status and reason satisfy `accept` (which also
/// sees the posture).
pub async fn compliant_when(
    client: &Client,
    ns: &str,
    posture: &str,
    what: &str,
    timeout: Duration,
    accept: impl Fn(&RuntimePosture, &str, &str) -> bool,
) -> RuntimePosture {
    let api: Api<RuntimePosture> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("RuntimePosture {ns}/{posture}: {what}"),
        timeout,
        || async {
            let p = api.get_opt(posture).await.ok()??;
            let condition = p
                .status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| c.type_ == "Compliant")?
                .clone();
            accept(&p, &condition.status, &condition.reason).then_some(p)
        },
    )
    .await
}

pub fn has_evidence(f: &DriftFinding, signal: &str, value: &str) -> bool {
    f.evidence
        .iter()
        .any(|e| e.signal == signal && e.value.contains(value))
}

/// Drops a copy of busybox at `path` in the pod's container and starts it in the background
/// (as `kubectl exec` lets anyone), then waits until this node's entry of `posture` reports
/// it as process drift.
pub async fn run_dropped_program(client: &Client, ns: &str, pod: &str, posture: &str, path: &str) {
    crate::kubectl(&[
        "-n",
        ns,
        "exec",
        pod,
        "--",
        "sh",
        "-c",
        &format!(
            "mkdir -p \"$(dirname {path})\" && cp /bin/busybox {path} && ({path} 300 >/dev/null 2>&1 &)"
        ),
    ]);
    node_entry(
        client,
        ns,
        posture,
        &format!("process drift of {path}"),
        Duration::from_secs(60),
        |e| {
            e.drift
                .iter()
                .any(|f| f.kind == DriftKind::Process && f.subject == path)
        },
    )
    .await;
}

/// Runs `tests/e2e/observer.sh ACTION` (`stop`, `kill`, `start`) with `vars` added to its
/// environment: the observer run.sh started, restarted otherwise configured.
pub fn observer_ctl(action: &str, vars: &[(&str, &str)]) {
    let status = observer_command(action, vars)
        .status()
        .expect("running observer.sh");
    assert!(status.success(), "observer.sh {action} {vars:?} failed");
}

fn observer_command(action: &str, vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new("bash");
    command
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/observer.sh"))
        .arg(action)
        .envs(vars.iter().copied());
    command
}

/// Puts the observer back as run.sh started it when dropped, also when the test fails.
pub struct RestoreObserver;

impl Drop for RestoreObserver {
    fn drop(&mut self) {
        // No assertion here: a panic while a failed test unwinds would abort the run.
        for action in ["stop", "start"] {
            if !observer_command(action, &[])
                .status()
                .is_ok_and(|s| s.success())
            {
                eprintln!("observer.sh {action} failed while restoring the observer");
            }
        }
    }
}

/// `sha256sum FILE` (coreutils), the reference the observer's hashes are compared with.
pub fn sha256sum(path: &str) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sha256sum {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The GNU build-id `readelf -n FILE` (binutils) prints.
pub fn readelf_build_id(path: &str) -> Option<String> {
    let out = std::process::Command::new("readelf")
        .args(["-n", path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "readelf -n {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: ").map(str::to_string))
}
