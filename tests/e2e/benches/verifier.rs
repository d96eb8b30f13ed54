//! `make bench-verifier` (tests/e2e/bench-verifier.sh): continuous verification under load.
//!
//! 500 running workloads over 50 distinct image digests: 50 small images pushed to the real
//! registry (distinct contents, so distinct digests) and 500 RuntimePostures listing one of
//! them each, as the operator lists what the observers saw (no Pods: the node holds 110, and
//! the verifier reads what runs from the postures). One namespace, governed by a policy that
//! requires a cosign signature. The webhook (a host process, the dev build) holds the verifier
//! Lease and verifies them all; then the policy changes and it verifies them all again.
//!
//! Printed, per pass (the first, cold; the one the policy change causes):
//! - how long until every workload had its verdict, and workloads per second;
//! - the registry's own count of requests for these images (its access log), against the
//!   requests one cold lookup of one digest makes (measured first, with `zastava-webhook
//!   check`): lookups per distinct digest = requests / (50 x requests of one lookup), at most
//!   1.0 when concurrent verifications of one digest share one lookup;
//! - the webhook process's CPU (utime + stime from /proc) and its resident memory (VmRSS and
//!   the peak VmHWM), against the seed's node budget (< 2 % CPU, < 100 MB).
//!
//! Nothing is asserted here; the README quotes the figures.

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use zastava_crds::RuntimePosture;
use zastava_e2e::{apply_policy, client, create_namespace, env, unique, wait_for, CosignKeys};

const WORKLOADS: usize = 500;
const DIGESTS: usize = 50;
const BENCH_MANAGER: &str = "zastava-bench";

/// Pushes a one-layer image with `content` to `reference` with the real `oras push` and
/// returns its digest.
fn push(reference: &str, content: &str) -> String {
    let dir = std::env::temp_dir().join(unique("bench-verify"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("layer.txt"), content).unwrap();
    let out = Command::new(env("ORAS"))
        .current_dir(&dir)
        .args([
            "push",
            "--plain-http",
            reference,
            "layer.txt:application/vnd.oci.image.layer.v1.tar",
        ])
        .output()
        .expect("running oras");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "oras push {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Digest: "))
        .unwrap_or_else(|| panic!("no digest in oras's output: {text}"))
        .trim()
        .to_string()
}

/// Requests the registry logged for paths containing `marker` (its access log: one line per
/// request, common log format).
fn registry_requests(marker: &str) -> usize {
    let log = std::path::Path::new(&env("ZASTAVA_E2E_STATE")).join("logs/registry.log");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" HTTP/1.1\" ") && l.contains(marker))
        .count()
}

/// The webhook process's CPU seconds (utime + stime) and its VmRSS and VmHWM in MiB.
fn webhook_usage() -> (f64, f64, f64) {
    let pid = std::fs::read_to_string(env("ZASTAVA_WEBHOOK_PID")).unwrap();
    let pid = pid.trim();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command (which may hold spaces) start after its closing ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |key: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        ticks / 100.0,
        kib("VmRSS:") / 1024.0,
        kib("VmHWM:") / 1024.0,
    )
}

/// `zastava_reverifications_total` summed over `trigger`'s results, from the webhook.
async fn reverifications(trigger: &str) -> f64 {
    let url = env("ZASTAVA_WEBHOOK_METRICS_URL");
    let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
    body.lines()
        .filter(|l| {
            l.starts_with("zastava_reverifications_total{")
                && l.contains(&format!("trigger=\"{trigger}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Pass {
    seconds: f64,
    requests: usize,
    cpu: f64,
    rss: f64,
    hwm: f64,
}

/// Waits until `trigger`'s count grew by [`WORKLOADS`] from `before`, measuring the pass.
async fn pass(trigger: &str, before: f64, marker: &str, started: Instant) -> Pass {
    let requests_before = registry_requests(marker);
    let (cpu_before, ..) = webhook_usage();
    wait_for(
        &format!("{WORKLOADS} workloads verified ({trigger})"),
        Duration::from_secs(600),
        || async { (reverifications(trigger).await - before >= WORKLOADS as f64).then_some(()) },
    )
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let (cpu_after, rss, hwm) = webhook_usage();
    Pass {
        seconds,
        requests: registry_requests(marker) - requests_before,
        cpu: cpu_after - cpu_before,
        rss,
        hwm,
    }
}

fn report(name: &str, pass: &Pass, per_lookup: usize) {
    let lookups = pass.requests as f64 / (DIGESTS * per_lookup) as f64;
    println!(
        "{name}: {WORKLOADS} workloads in {:.1} s ({:.0}/s); registry requests {} for {DIGESTS} digests = {:.2} lookups per digest; webhook CPU {:.2} s ({:.1} % of one core over the pass, {:.2} ms per workload); VmRSS {:.1} MiB, peak {:.1} MiB",
        pass.seconds,
        WORKLOADS as f64 / pass.seconds,
        pass.requests,
        lookups,
        pass.cpu,
        100.0 * pass.cpu / pass.seconds,
        1000.0 * pass.cpu / WORKLOADS as f64,
        pass.rss,
        pass.hwm,
    );
}

#[tokio::main]
async fn main() {
    let client = client().await;
    let run = unique("bench-verify");
    let registry = env("ZASTAVA_REGISTRY");
    let marker = format!("/v2/e2e/{run}-");
    println!("pushing {DIGESTS} images");
    let images: Vec<(String, String)> = (0..DIGESTS)
        .map(|i| {
            let reference = format!("{registry}/e2e/{run}-{i}:v1");
            let digest = push(&reference, &format!("{run} image {i}\n"));
            (reference, digest)
        })
        .collect();
    let keys = CosignKeys::generate();
    let spec = |banned: &[&str]| {
        json!({"namespaces": [run], "images": {"bannedTags": banned},
               "verify": {"signature": {"required": true,
                          "keys": [{"name": "release", "pem": keys.public_pem}]}}})
    };

    // What one cold lookup of one digest asks the registry, with the same code.
    let dir = std::env::temp_dir().join(unique("bench-verify-check"));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = json!({"apiVersion": "zastava.stellaops.io/v1alpha1", "kind": "ZastavaPolicy",
                        "metadata": {"name": "bench"}, "spec": spec(&[])});
    std::fs::write(dir.join("policy.json"), policy.to_string()).unwrap();
    std::fs::write(
        dir.join("pod.json"),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": run},
               "spec": {"containers": [{"name": "c", "image": format!("{}@{}", images[0].0, images[0].1)}]}})
        .to_string(),
    )
    .unwrap();
    let before = registry_requests(&marker);
    let out = Command::new(env("ZASTAVA_WEBHOOK_BIN"))
        .args(["check", "--policy"])
        .arg(dir.join("policy.json"))
        .arg("--object")
        .arg(dir.join("pod.json"))
        .args(["--insecure-registries", &registry])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        out.status.code(),
        Some(1),
        "check: an unsigned image is denied"
    );
    let per_lookup = registry_requests(&marker) - before;
    println!("one cold lookup of one digest: {per_lookup} registry requests");

    create_namespace(&client, &run, json!({})).await;
    println!("creating {WORKLOADS} RuntimePostures");
    let postures: Api<RuntimePosture> = Api::namespaced(client.clone(), &run);
    for i in 0..WORKLOADS {
        let name = format!("deployment-w{i}");
        let posture: RuntimePosture = serde_json::from_value(json!({
            "apiVersion": "zastava.stellaops.io/v1alpha1", "kind": "RuntimePosture",
            "metadata": {"name": name},
            "spec": {"workload": {"kind": "Deployment", "name": format!("w{i}")}},
        }))
        .unwrap();
        postures
            .create(&PostParams::default(), &posture)
            .await
            .unwrap();
        let (reference, digest) = &images[i % DIGESTS];
        let status = json!({
            "apiVersion": "zastava.stellaops.io/v1alpha1", "kind": "RuntimePosture",
            "status": {"images": [{"reference": reference, "digest": digest}]},
        });
        postures
            .patch_status(
                &name,
                &PatchParams::apply(BENCH_MANAGER).force(),
                &Patch::Apply(&status),
            )
            .await
            .unwrap();
    }

    let policy_name = format!("{run}-policy");
    let new_before = reverifications("new").await + reverifications("policy").await;
    let started = Instant::now();
    apply_policy(&client, &policy_name, spec(&[])).await;
    // The first pass: each workload is new to the verifier, or its namespace newly governed.
    let first = {
        let requests_before = registry_requests(&marker);
        let (cpu_before, ..) = webhook_usage();
        wait_for(
            &format!("{WORKLOADS} workloads verified"),
            Duration::from_secs(600),
            || async {
                let done =
                    reverifications("new").await + reverifications("policy").await - new_before;
                (done >= WORKLOADS as f64).then_some(())
            },
        )
        .await;
        let seconds = started.elapsed().as_secs_f64();
        let (cpu_after, rss, hwm) = webhook_usage();
        Pass {
            seconds,
            requests: registry_requests(&marker) - requests_before,
            cpu: cpu_after - cpu_before,
            rss,
            hwm,
        }
    };
    report("first pass (cold cache)", &first, per_lookup);

    // The policy changes (a tag nobody uses is banned): every workload again.
    let before = reverifications("policy").await;
    let started = Instant::now();
    apply_policy(&client, &policy_name, spec(&["never-used"])).await;
    let second = pass("policy", before, &marker, started).await;
    report("after a policy change", &second, per_lookup);
    println!(
        "seed budget (node): < 2 % CPU, < 100 MB RAM; load average {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    let policies: Api<zastava_crds::ZastavaPolicy> = Api::all(client.clone());
    let _ = policies
        .delete(&policy_name, &DeleteParams::default())
        .await;
    let namespaces: Api<Namespace> = Api::all(Client::clone(&client));
    let _ = namespaces.delete(&run, &DeleteParams::default()).await;
}
