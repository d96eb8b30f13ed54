//! The CRDs install and `kubectl get` shows their printer columns; the operator folds the
//! observers' per-node reports of a RuntimePosture into its summary and conditions.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;
use std::time::Duration;

use zastava_e2e::{
    apply_policy, client, delete_policy, env, kubectl, unique, wait_for, wait_ready, FIELD_MANAGER,
};

#[tokio::test]
async fn crds_are_established_with_status_subresources() {
    let client = client().await;
    let api: Api<CustomResourceDefinition> = Api::all(client);
    for name in [
        "zastavapolicies.zastava.stellaops.io",
        "runtimepostures.zastava.stellaops.io",
    ] {
        let crd = api.get(name).await.unwrap();
        let established = crd
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{name} is not Established");
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{name} has no status subresource on the server"
        );
    }
}

#[tokio::test]
async fn kubectl_get_zp_shows_the_printer_columns() {
    let client = client().await;
    let name = unique("e2e-columns");
    apply_policy(&client, &name, json!({"mode": "Audit"})).await;
    wait_ready(&client, &name, "True").await;

    let table = kubectl(&["get", "zp", &name]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "MODE", "READY", "REASON", "KEYS", "AGE"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..5], [name.as_str(), "Audit", "True", "Accepted", "0"]);

    delete_policy(&client, &name).await;
}

#[tokio::test]
async fn kubectl_get_rp_shows_the_printer_columns() {
    let client = client().await;
    let ns = unique("e2e-rp");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();

    let postures: Api<zastava_crds::RuntimePosture> = Api::namespaced(client.clone(), &ns);
    let object = json!({
        "apiVersion": "zastava.stellaops.io/v1alpha1",
        "kind": "RuntimePosture",
        "metadata": {"name": "deployment-web"},
        "spec": {"workload": {"kind": "Deployment", "name": "web"}},
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    postures
        .patch("deployment-web", &params, &Patch::Apply(&object))
        .await
        .unwrap();
    // What two node observers report, each with a field manager of its own; `gone-node` is
    // not a node of this cluster, so the operator drops its entry.
    for (node, containers, drift) in [(env("ZASTAVA_NODE"), 2, 1), ("gone-node".to_string(), 3, 0)]
    {
        let observation = json!({
            "apiVersion": "zastava.stellaops.io/v1alpha1",
            "kind": "RuntimePosture",
            "status": {"nodes": [{
                "node": node,
                "containers": (0..containers).map(|i| json!({
                    "pod": format!("web-{i}"), "container": "app",
                    "containerId": format!("containerd://{i}"), "imageRef": "127.0.0.1:5000/web:1",
                })).collect::<Vec<_>>(),
                "drift": (0..drift).map(|_| json!({
                    "kind": "process", "pod": "web-0", "container": "app", "subject": "/tmp/evil",
                    "evidence": [{"signal": "procfs.exe", "value": "/tmp/evil"}],
                })).collect::<Vec<_>>(),
            }]},
        });
        let manager = PatchParams::apply(&format!("zastava-observer-{node}")).force();
        postures
            .patch_status("deployment-web", &manager, &Patch::Apply(&observation))
            .await
            .unwrap();
    }
    // The operator folds the live node's findings into the summary and the conditions.
    let folded = wait_for(
        "the operator to fold the observations into the summary",
        Duration::from_secs(60),
        || async {
            let p = postures.get("deployment-web").await.ok()?;
            let status = p.status?;
            let compliant = status.conditions.iter().find(|c| c.type_ == "Compliant")?;
            (status.nodes.len() == 1
                && status.observed_containers == Some(2)
                && compliant.status == "False")
                .then_some(status)
        },
    )
    .await;
    assert_eq!(folded.drift_findings, Some(1));
    assert_eq!(folded.nodes[0].node, env("ZASTAVA_NODE"));
    let drifted = folded
        .conditions
        .iter()
        .find(|c| c.type_ == "Drifted")
        .unwrap();
    assert_eq!(
        (drifted.status.as_str(), drifted.reason.as_str()),
        ("True", "DriftDetected")
    );

    let table = kubectl(&["get", "rp", "-A"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "NAME",
            "KIND",
            "WORKLOAD",
            "CONTAINERS",
            "DRIFT",
            "COMPLIANT",
            "READY",
            "AGE"
        ]
    );
    let row: Vec<&str> = lines
        .find(|l| l.starts_with(&ns))
        .unwrap_or_else(|| panic!("no row for {ns} in:\n{table}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..8],
        [
            ns.as_str(),
            "deployment-web",
            "Deployment",
            "web",
            "2",
            "1",
            "False",
            "True"
        ]
    );

    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}
