//! The CRDs install and `kubectl get` shows their printer columns.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;
use zastava_e2e::{
    apply_policy, client, delete_policy, kubectl, unique, wait_ready, FIELD_MANAGER,
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
    let status = json!({
        "apiVersion": "zastava.stellaops.io/v1alpha1",
        "kind": "RuntimePosture",
        "status": {
            "observedContainers": 2,
            "driftFindings": 1,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Observed", "message": "2 containers on 1 node",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Compliant", "status": "False", "reason": "Drifted", "message": "1 drift finding",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ]
        }
    });
    postures
        .patch_status("deployment-web", &params, &Patch::Apply(&status))
        .await
        .unwrap();

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
