//! The deployable manifests (`kubectl apply -k config/default`) are valid for the real API
//! server: a server-side dry run admits every object, RBAC included.

use zastava_e2e::{env, kubectl};

#[test]
fn config_default_passes_a_server_side_dry_run() {
    env("KUBECONFIG");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/default");
    let out = kubectl(&["apply", "--dry-run=server", "-k", dir]);
    for object in [
        "customresourcedefinition.apiextensions.k8s.io/zastavapolicies.zastava.stellaops.io",
        "customresourcedefinition.apiextensions.k8s.io/runtimepostures.zastava.stellaops.io",
        "serviceaccount/zastava-operator",
        "clusterrole.rbac.authorization.k8s.io/zastava-operator",
        "role.rbac.authorization.k8s.io/zastava-operator",
        "deployment.apps/zastava-operator",
        "serviceaccount/zastava-webhook",
        "clusterrole.rbac.authorization.k8s.io/zastava-webhook",
        "role.rbac.authorization.k8s.io/zastava-webhook",
        "deployment.apps/zastava-webhook",
        "service/zastava-webhook",
        "serviceaccount/zastava-observer",
        "clusterrole.rbac.authorization.k8s.io/zastava-observer",
        "daemonset.apps/zastava-observer",
    ] {
        assert!(out.contains(object), "{object} missing from:\n{out}");
    }
}
