//! The node observer against the real cluster: the observer `run.sh` starts on the node
//! (`zastava-observer run`, CRI socket of the cluster's containerd) inventories a Deployment's
//! container into the Deployment's `RuntimePosture`, reports a program dropped into the
//! running container as drift (status and Event), follows the runtime rules of a
//! `ZastavaPolicy`, and removes its entry when the container stops.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use zastava_crds::posture::DriftKind;
use zastava_crds::RuntimePosture;
use zastava_e2e::observer::{
    deploy, deploy_containers, deploy_image, has_evidence, node_entry, readelf_build_id,
    running_pod, sha256sum,
};
use zastava_e2e::{
    apply_policy, client, create_namespace, delete_namespace, delete_policy, env, http_get,
    kubectl, metric, unique, wait_for, TestImage, FIELD_MANAGER,
};

/// A new namespace and an Audit policy of its own governing it with `runtime` settings.
async fn governed_namespace(client: &Client, prefix: &str, runtime: Value) -> (String, String) {
    let ns = unique(prefix);
    let policy = unique(prefix);
    create_namespace(client, &ns, json!({})).await;
    apply_policy(
        client,
        &policy,
        json!({"mode": "Audit", "namespaces": [ns], "runtime": runtime}),
    )
    .await;
    (ns, policy)
}

#[tokio::test]
async fn inventory_drift_events_and_stop() {
    let client = client().await;
    let ns = unique("e2e-obs");
    create_namespace(&client, &ns, json!({})).await;
    let deployment = deploy(&client, &ns, "sleeper", &["sleep", "3600"]).await;
    let pod = running_pod(&client, &ns, "sleeper").await;
    let pod_name = pod.metadata.name.clone().unwrap();

    // Inventory: the container, by digest, with the PID of its main process.
    let (posture, entry) = node_entry(
        &client,
        &ns,
        "deployment-sleeper",
        "this node's entry lists the container",
        Duration::from_secs(60),
        |e| e.containers.iter().any(|c| c.pod == pod_name),
    )
    .await;
    let c = &entry.containers[0];
    assert_eq!(c.container, "app");
    assert_eq!(c.image_ref, env("ZASTAVA_TEST_IMAGE"));
    assert_eq!(c.image_digest, Some(env("ZASTAVA_TEST_IMAGE_DIGEST")));
    assert!(c.started_at.is_some());
    let container_id = pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .container_id
        .clone()
        .unwrap();
    assert!(
        container_id.ends_with(&c.container_id),
        "{container_id} vs {}",
        c.container_id
    );
    // The PID is the container's main process on this host.
    let pid = c.pid.expect("the main process's pid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, b"sleep\x003600\x00");
    assert!(entry.drift.is_empty(), "{:?}", entry.drift);

    // The operator folds the node entries: the image the workload runs, by digest.
    let postures: Api<RuntimePosture> = Api::namespaced(client.clone(), &ns);
    wait_for(
        "the posture's images, folded by the operator",
        Duration::from_secs(60),
        || async {
            let status = postures.get("deployment-sleeper").await.ok()?.status?;
            status
                .images
                .iter()
                .any(|i| {
                    i.reference == env("ZASTAVA_TEST_IMAGE")
                        && i.digest == Some(env("ZASTAVA_TEST_IMAGE_DIGEST"))
                })
                .then_some(())
        },
    )
    .await;

    // The posture belongs to the Deployment (garbage-collected with it), written by the
    // observer's field managers.
    let spec = &posture.spec.workload;
    assert_eq!(
        (spec.kind.as_str(), spec.name.as_str()),
        ("Deployment", "sleeper")
    );
    assert_eq!(spec.uid, deployment.metadata.uid);
    let owners = posture.metadata.owner_references.clone().unwrap();
    assert_eq!(owners[0].uid, deployment.metadata.uid.clone().unwrap());
    let managers: Vec<String> = posture
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&"zastava-observer".to_string()),
        "{managers:?}"
    );
    assert!(
        managers.contains(&format!("zastava-observer-{}", env("ZASTAVA_NODE"))),
        "{managers:?}"
    );

    // Drift: a copy of busybox dropped into /tmp and run as `sleep` (busybox runs the applet
    // its argv[0] names) is neither the traced entrypoint `sleep` nor part of the image.
    kubectl(&[
        "-n",
        &ns,
        "exec",
        &pod_name,
        "--",
        "sh",
        "-c",
        "mkdir -p /tmp/evil && cp /bin/busybox /tmp/evil/sleep && (/tmp/evil/sleep 300 >/dev/null 2>&1 &)",
    ]);
    let (_, entry) = node_entry(
        &client,
        &ns,
        "deployment-sleeper",
        "process and filesystem drift of /tmp/evil/sleep",
        Duration::from_secs(30),
        |e| {
            [DriftKind::Process, DriftKind::Filesystem].iter().all(|k| {
                e.drift
                    .iter()
                    .any(|f| f.kind == *k && f.subject == "/tmp/evil/sleep")
            })
        },
    )
    .await;
    let busybox =
        zastava_observer::hashing::sha256_file(Path::new(&format!("/proc/{pid}/root/bin/busybox")))
            .unwrap()
            .sha256;
    let process = entry
        .drift
        .iter()
        .find(|f| f.kind == DriftKind::Process)
        .unwrap();
    assert_eq!(process.pod, pod_name);
    assert_eq!(process.container, "app");
    assert_eq!(process.sha256.as_deref(), Some(busybox.as_str()));
    assert!(process.first_seen.is_some());
    assert!(
        has_evidence(process, "procfs.exe", "/tmp/evil/sleep"),
        "{process:?}"
    );
    // The baseline: the entrypoint `sleep 3600`, traced inside the container's root.
    assert!(
        has_evidence(process, "entrytrace.terminals", "sleep"),
        "{process:?}"
    );
    let filesystem = entry
        .drift
        .iter()
        .find(|f| f.kind == DriftKind::Filesystem)
        .unwrap();
    assert!(
        has_evidence(filesystem, "fs.mtime", "")
            || has_evidence(filesystem, "overlay.upperdir", "/tmp/evil/sleep"),
        "{filesystem:?}"
    );
    // The main process itself (busybox running `sleep`, as traced) is no drift.
    assert!(
        !entry.drift.iter().any(|f| f
            .evidence
            .iter()
            .any(|e| e.signal == "procfs.pid" && e.value == pid.to_string())),
        "{:?}",
        entry.drift
    );

    // ... and filed as a Warning Event on the Pod.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let event = wait_for(
        "a Drift Event on the Pod",
        Duration::from_secs(30),
        || async {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some("Drift")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                            == Some(pod_name.as_str())
                        && e.note
                            .as_deref()
                            .is_some_and(|n| n.contains("process drift"))
                })
        },
    )
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(
        event.reporting_controller.as_deref(),
        Some("zastava-observer")
    );
    assert!(event.note.unwrap().contains("/tmp/evil/sleep"));

    // The counters of what happened.
    let url = env("ZASTAVA_OBSERVER_URL");
    let (status, _) = http_get(&format!("{url}/readyz"))
        .await
        .expect("observer probes");
    assert_eq!(status, 200);
    let (_, metrics) = http_get(&format!("{url}/metrics")).await.unwrap();
    for series in [
        "zastava_runtime_events_total{kind=\"CONTAINER_START\"}",
        "zastava_runtime_events_total{kind=\"DRIFT\"}",
        "zastava_proc_maps_samples_total{result=\"ok\"}",
    ] {
        assert!(
            metric(&metrics, series).is_some_and(|v| v >= 1.0),
            "{series} in\n{metrics}"
        );
    }
    assert!(metrics.contains("zastava_hash_bytes_total"));

    // The container stops: this node's entry goes within seconds.
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    api.patch(
        "sleeper",
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "spec": { "replicas": 0 },
        })),
    )
    .await
    .unwrap();
    let postures: Api<RuntimePosture> = Api::namespaced(client.clone(), &ns);
    wait_for(
        "this node's entry to be removed after the container stopped",
        Duration::from_secs(60),
        || async {
            let p = postures.get_opt("deployment-sleeper").await.ok()??;
            let nodes = p.status.map(|s| s.nodes).unwrap_or_default();
            nodes
                .iter()
                .all(|n| n.node != env("ZASTAVA_NODE"))
                .then_some(())
        },
    )
    .await;

    delete_namespace(&client, &ns).await;
}

/// A policy governing the namespace picks the drift kinds and the allowed listening ports:
/// here only network drift, port 8080 allowed, so the listener on 4444 is drift and nothing
/// else is reported.
#[tokio::test]
async fn policy_runtime_rules() {
    let client = client().await;
    let (ns, policy) = governed_namespace(
        &client,
        "e2e-obs-net",
        json!({
            "drift": { "process": false, "library": false, "filesystem": false, "network": true },
            "allowedListeningPorts": [8080],
        }),
    )
    .await;
    // busybox httpd: one in the background on 8080, one in the foreground on 4444.
    deploy(
        &client,
        &ns,
        "web",
        &["sh", "-c", "httpd -p 8080 && exec httpd -f -p 4444"],
    )
    .await;
    let (_, entry) = node_entry(
        &client,
        &ns,
        "deployment-web",
        "network drift on tcp/4444",
        Duration::from_secs(120),
        |e| e.drift.iter().any(|f| f.subject == "tcp/4444"),
    )
    .await;
    let kinds: Vec<DriftKind> = entry.drift.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [DriftKind::Network], "{:?}", entry.drift);
    assert!(has_evidence(
        &entry.drift[0],
        "policy.allowedListeningPorts",
        "8080"
    ));

    delete_policy(&client, &policy).await;
    delete_namespace(&client, &ns).await;
}

/// Two containers of one pod share its network namespace, whose socket tables the observer
/// reads once and keeps while nothing in the namespace changes: a listener opened later in the
/// second container (by `kubectl exec`, so no container start announces it) is still network
/// drift, reported on that container.
#[tokio::test]
async fn listener_in_the_second_container_of_a_pod() {
    let client = client().await;
    let (ns, policy) = governed_namespace(
        &client,
        "e2e-obs-side",
        json!({
            "drift": { "process": false, "library": false, "filesystem": false, "network": true },
        }),
    )
    .await;
    let image = env("ZASTAVA_TEST_IMAGE");
    let sleep = ["sleep", "3600"];
    deploy_containers(
        &client,
        &ns,
        "pair",
        json!([
            { "name": "app", "image": image, "command": sleep },
            { "name": "side", "image": image, "command": sleep },
        ]),
    )
    .await;
    let pod = running_pod(&client, &ns, "pair").await;
    let pod_name = pod.metadata.name.clone().unwrap();
    // Both containers tracked and at least one drift round over them done with no finding:
    // the namespace's tables are read and kept before the listener exists.
    node_entry(
        &client,
        &ns,
        "deployment-pair",
        "both containers listed",
        Duration::from_secs(90),
        |e| {
            ["app", "side"].iter().all(|name| {
                e.containers
                    .iter()
                    .any(|c| c.pod == pod_name && c.container == *name)
            })
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (_, entry) = node_entry(
        &client,
        &ns,
        "deployment-pair",
        "still no drift",
        Duration::from_secs(5),
        |_| true,
    )
    .await;
    assert!(entry.drift.is_empty(), "{:?}", entry.drift);

    // busybox httpd without -f goes to the background and keeps listening.
    kubectl(&[
        "-n", &ns, "exec", &pod_name, "-c", "side", "--", "httpd", "-p", "4445",
    ]);
    let (_, entry) = node_entry(
        &client,
        &ns,
        "deployment-pair",
        "network drift on tcp/4445",
        Duration::from_secs(60),
        |e| e.drift.iter().any(|f| f.subject == "tcp/4445"),
    )
    .await;
    let finding = entry
        .drift
        .iter()
        .find(|f| f.subject == "tcp/4445")
        .unwrap();
    assert_eq!(finding.kind, DriftKind::Network);
    assert_eq!(finding.container, "side", "{finding:?}");
    assert_eq!(finding.pod, pod_name);

    delete_policy(&client, &policy).await;
    delete_namespace(&client, &ns).await;
}

/// A dynamically linked program started through `sh -c`: its RuntimePosture shows the entry
/// trace down to the program, the executable and every library it maps with the sha256 and
/// build-id the machine's own `sha256sum` and `readelf -n` give for the same files; and with
/// an SBOM attached to the image that leaves out libc, libc is library drift.
#[tokio::test]
async fn loaded_libraries_entry_trace_and_library_drift() {
    let client = client().await;
    let (ns, policy) = governed_namespace(
        &client,
        "e2e-obs-libs",
        json!({
            "drift": { "process": false, "library": true, "filesystem": false, "network": false },
        }),
    )
    .await;
    let image = TestImage::copy("ZASTAVA_DYN_IMAGE", &ns, "v1");
    // What the image ships, as an SBOM generator would list it — minus libc.
    image.attach_cyclonedx(
        r#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[
            {"type":"file","name":"/opt/dyn/bin/sleep"},
            {"type":"file","name":"/lib64/ld-linux-x86-64.so.2"},
            {"type":"application","name":"busybox","version":"1.36"}]}"#,
    );
    deploy_image(
        &client,
        &ns,
        "dyn",
        &image.by_tag(),
        &["/bin/sh", "-c", "exec /opt/dyn/bin/sleep 3600"],
    )
    .await;
    let pod = running_pod(&client, &ns, "dyn").await;
    let pod_name = pod.metadata.name.clone().unwrap();

    let (_, entry) = node_entry(
        &client,
        &ns,
        "deployment-dyn",
        "the main process with its libraries",
        Duration::from_secs(90),
        |e| {
            e.processes.iter().any(|p| {
                p.pod == pod_name
                    && p.executable
                        .as_ref()
                        .is_some_and(|x| x.path == "/opt/dyn/bin/sleep")
                    && !p.loaded_libs.is_empty()
            })
        },
    )
    .await;
    let process = entry.processes.iter().find(|p| p.pod == pod_name).unwrap();
    assert_eq!(process.container, "app");
    assert_eq!(process.image_digest.as_deref(), Some(image.digest.as_str()));
    let root = format!("/proc/{}/root", process.pid);

    // The entry trace: `sh -c` parsed, `exec` of the program, never run.
    assert_eq!(process.terminals, ["/opt/dyn/bin/sleep"]);
    assert!(
        process.entry_trace.iter().any(|s| s.op == "shell-c"),
        "{:?}",
        process.entry_trace
    );
    assert!(
        process
            .entry_trace
            .iter()
            .any(|s| s.op == "exec" && s.target == "/opt/dyn/bin/sleep"),
        "{:?}",
        process.entry_trace
    );

    // The executable and each library, against sha256sum and readelf of the same files.
    let exe = process.executable.as_ref().unwrap();
    let exe_path = format!("{root}{}", exe.path);
    assert_eq!(exe.sha256.as_deref(), Some(sha256sum(&exe_path).as_str()));
    assert_eq!(exe.build_id, readelf_build_id(&exe_path));
    assert!(exe.build_id.is_some(), "Debian builds carry build-ids");
    let paths: Vec<&str> = process
        .loaded_libs
        .iter()
        .map(|l| l.path.as_str())
        .collect();
    assert!(paths.iter().any(|p| p.ends_with("/libc.so.6")), "{paths:?}");
    assert!(paths.iter().any(|p| p.contains("ld-linux")), "{paths:?}");
    for lib in &process.loaded_libs {
        let file = format!("{root}{}", lib.path);
        assert_eq!(
            lib.sha256.as_deref(),
            Some(sha256sum(&file).as_str()),
            "{}",
            lib.path
        );
        assert_eq!(lib.build_id, readelf_build_id(&file), "{}", lib.path);
        let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&file).unwrap());
        assert_eq!(lib.inode, inode, "{}", lib.path);
    }
    assert_eq!(process.loaded_libs_total, None);

    // Library drift: libc is loaded and not in the SBOM; the loader and the program are.
    let (_, entry) = node_entry(
        &client,
        &ns,
        "deployment-dyn",
        "library drift of libc",
        Duration::from_secs(60),
        |e| e.drift.iter().any(|f| f.kind == DriftKind::Library),
    )
    .await;
    let subjects: Vec<&str> = entry.drift.iter().map(|f| f.subject.as_str()).collect();
    assert!(
        subjects.len() == 1 && subjects[0].ends_with("/libc.so.6"),
        "{:?}",
        entry.drift
    );
    let finding = &entry.drift[0];
    assert!(
        has_evidence(finding, "procfs.maps", "libc.so.6"),
        "{finding:?}"
    );
    assert!(has_evidence(finding, "sbom.cyclonedx", ""), "{finding:?}");

    let (_, metrics) = http_get(&format!("{}/metrics", env("ZASTAVA_OBSERVER_URL")))
        .await
        .unwrap();
    assert!(
        metric(
            &metrics,
            "zastava_observer_sbom_fetches_total{result=\"found\"}"
        )
        .is_some_and(|v| v >= 1.0),
        "{metrics}"
    );

    delete_policy(&client, &policy).await;
    delete_namespace(&client, &ns).await;
}
