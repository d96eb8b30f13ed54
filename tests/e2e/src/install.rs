//! Helpers of the in-cluster tests: Zastava installed from `charts/zastava` with real Helm
//! (`tests/e2e/helm.py` over Helm's own Go SDK), its images from the local registry by digest.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::{env, unique, wait_for};

/// The release and namespace the tests install into (not `zastava-system`, which the
/// host-process tests used: nothing may depend on the default namespace).
pub const RELEASE: &str = "zastava";
pub const NAMESPACE: &str = "zastava-e2e-chart";
/// The ValidatingWebhookConfiguration the operator keeps.
pub const WEBHOOK_CONFIG: &str = "zastava-webhook";

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `helm ARGS...`: `Ok(stdout)` or `Err(stderr)`.
pub fn helm(args: &[&str]) -> Result<String, String> {
    let output = Command::new(env("ZASTAVA_HELM_PYTHON"))
        .arg(workspace().join("tests/e2e/helm.py"))
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("running tests/e2e/helm.py");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// The images `make images` published: `(component, registry/zastava/component@sha256:...)`.
pub fn images() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(env("ZASTAVA_IMAGES_ENV")).expect("the images.env file");
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let component = k
                .trim_start_matches("ZASTAVA_")
                .trim_end_matches("_IMAGE")
                .to_ascii_lowercase();
            (component, v.to_string())
        })
        .collect()
}

pub fn image(component: &str) -> String {
    images()
        .into_iter()
        .find(|(c, _)| c == component)
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("no {component} image in images.env"))
}

/// The chart `make images` pushed as an OCI artifact (`oci://registry/charts/zastava:version`),
/// from `chart.ref` beside the images.env file.
pub fn chart_reference() -> String {
    let images = PathBuf::from(env("ZASTAVA_IMAGES_ENV"));
    let path = images.with_file_name("chart.ref");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

/// The public key Zastava's images are signed with.
pub fn image_signing_key() -> String {
    std::fs::read_to_string(env("ZASTAVA_IMAGES_PUBKEY")).expect("the images' cosign.pub")
}

/// Values for this cluster (`tests/e2e/chart-values.sh`, as `make demo` installs): images by
/// digest from the local registry, plain HTTP to it, the observer pointed at this node's
/// containerd; plus a short Lease so takeovers are quick, and `extra` (merged over them).
pub fn values(extra: Value) -> PathBuf {
    let output = Command::new("bash")
        .arg(workspace().join("tests/e2e/chart-values.sh"))
        .arg(env("ZASTAVA_IMAGES_ENV"))
        .output()
        .expect("running tests/e2e/chart-values.sh");
    assert!(
        output.status.success(),
        "chart-values.sh: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut values: Value = serde_json::from_slice(&output.stdout).expect("chart values as JSON");
    merge(
        &mut values,
        json!({"operator": {"leaseDurationSeconds": 10}}),
    );
    merge(&mut values, extra);
    let path = std::env::temp_dir().join(format!("{}.json", unique("zastava-values")));
    std::fs::write(&path, values.to_string()).unwrap();
    path
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

/// `helm install` of `chart` (a directory, or an oci:// reference over plain HTTP) with this
/// cluster's values and `extra`; how long it took to return with every object ready.
pub fn install(chart: &str, extra: serde_json::Value) -> Duration {
    let values = values(extra);
    let start = Instant::now();
    let values = values.to_str().unwrap();
    let mut args = vec![
        "install",
        RELEASE,
        chart,
        "-n",
        NAMESPACE,
        "--create-namespace",
        "-f",
        values,
        "--wait",
        "--timeout",
        "300s",
    ];
    if chart.starts_with("oci://") {
        args.push("--plain-http");
    }
    helm(&args).unwrap_or_else(|e| panic!("helm install {chart}: {e}"));
    start.elapsed()
}

/// The configuration exists with webhooks, each with a CA bundle: the operator has
/// provisioned TLS and published it.
pub async fn webhook_configured(client: &Client) -> ValidatingWebhookConfiguration {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    wait_for(
        "the ValidatingWebhookConfiguration with a CA bundle",
        Duration::from_secs(120),
        || async {
            let vwc = api.get_opt(WEBHOOK_CONFIG).await.ok()??;
            let ready = vwc.webhooks.as_ref().is_some_and(|w| {
                !w.is_empty() && w.iter().all(|w| w.client_config.ca_bundle.is_some())
            });
            ready.then_some(vwc)
        },
    )
    .await
}

/// A release left by an interrupted run (of the in-cluster test or `make bench-admission`):
/// uninstalled, and its pods gone (an old operator would hold the Lease until it expires).
pub async fn remove_leftover_release(client: &Client) {
    if helm(&["uninstall", RELEASE, "-n", NAMESPACE, "--wait"]).is_ok() {
        pods_gone(
            client,
            NAMESPACE,
            &ListParams::default(),
            "the old release's pods",
        )
        .await;
    }
}

/// Waits (up to two minutes) until no Pod of `ns` that `selector` picks is left; `what` names
/// them in the panic.
pub async fn pods_gone(client: &Client, ns: &str, selector: &ListParams, what: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("{what} to be gone"),
        Duration::from_secs(120),
        || async {
            pods.list(selector)
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        },
    )
    .await;
}

/// Waits until every Pod of the release's namespace is Ready (and there is at least one of
/// each component); returns how long that took.
pub async fn wait_all_ready(client: &Client, timeout: Duration) -> Duration {
    let start = Instant::now();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    wait_for("every Zastava pod Ready", timeout, || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        let live: Vec<&Pod> = list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let count = |c: &str| {
            live.iter()
                .filter(|p| p.metadata.name.as_deref().unwrap_or("").contains(c))
                .count()
        };
        let all_ready = live.iter().all(|p| pod_ready(p));
        (all_ready && count("operator") == 2 && count("webhook") == 2 && count("observer") == 1)
            .then_some(())
    })
    .await;
    start.elapsed()
}

pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The names of the component's Pods that are not being deleted.
pub async fn pods_of(client: &Client, component: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let list = pods
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/name=zastava-{component}")))
        .await
        .expect("listing Zastava's pods");
    list.items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name)
        .collect()
}

/// What admission said to one create.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// The webhook answered and refused; its message.
    Denied(String),
    /// No answer from the webhook (or the API), the error's text.
    Failed(String),
}

/// A server-side dry-run create of a Pod of `image` in `ns`: admission runs, nothing is kept.
pub async fn admit(client: &Client, ns: &str, image: &str) -> Admission {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"generateName": "admit-"},
        "spec": {"containers": [{"name": "app", "image": image, "command": ["sleep", "1"]}]},
    }))
    .unwrap();
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    match pods.create(&params, &pod).await {
        Ok(_) => Admission::Allowed,
        Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("denied the request") => {
            Admission::Denied(e.message)
        }
        Err(e) => Admission::Failed(e.to_string()),
    }
}

/// Admissions of `image` (which must be allowed) in a loop until `stop`: how many were made
/// and every one that was not allowed.
pub async fn admission_loop(
    client: Client,
    ns: String,
    image: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (usize, Vec<Admission>) {
    let mut made = 0;
    let mut wrong = Vec::new();
    while !*stop.borrow() {
        let answer = admit(&client, &ns, &image).await;
        made += 1;
        if answer != Admission::Allowed {
            wrong.push(answer);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (made, wrong)
}

/// What each running process of `component` (`/usr/local/bin/zastava-<component>`, seen through
/// the node's `/proc`) uses: `(pid, VmRSS in MiB, CPU seconds so far)`. Printed by the tests,
/// the figures behind the chart's requests and limits; never asserted.
pub fn usage(component: &str) -> Vec<(u32, f64, f64)> {
    let exe = format!("/usr/local/bin/zastava-{component}");
    let ticks = 100.0; // USER_HZ on Linux
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.split(|b| *b == 0).next() != Some(exe.as_bytes()) {
            continue;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss_kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let cpu = fields
            .get(11)
            .and_then(|u| u.parse::<f64>().ok())
            .unwrap_or(0.0)
            + fields
                .get(12)
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0);
        found.push((pid, rss_kib / 1024.0, cpu / ticks));
    }
    found
}

/// One line per component: its processes' RSS and CPU seconds.
pub fn print_usage(when: &str) {
    for component in ["operator", "webhook", "observer"] {
        let figures: Vec<String> = usage(component)
            .iter()
            .map(|(pid, rss, cpu)| format!("pid {pid}: {rss:.1} MiB RSS, {cpu:.2} s CPU"))
            .collect();
        println!("usage {when}: {component}: {}", figures.join("; "));
    }
}
