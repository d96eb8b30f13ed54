//! The webhook's access to the pods' `imagePullSecrets`: a RoleBinding in every namespace but
//! Zastava's own (where the CA's private key lives) and `kube-system` (never governed),
//! binding the webhook's ServiceAccount to a ClusterRole of `get secrets`. So the webhook reads
//! pull Secrets where pods are decided and no Secret of Zastava's namespace but its serving
//! certificate's. Each RoleBinding is owned by that ClusterRole: uninstalling deletes them.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::rbac::v1::RoleBinding;
use serde_json::{json, Value};
use zastava_crds::governs::NEVER_GOVERNED;

use crate::webhook_config::cluster_role_owner;

/// The name of the RoleBinding in each namespace.
pub const BINDING: &str = "zastava-webhook-pull-secrets";

/// Whose access the RoleBindings grant, and through which ClusterRole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The ClusterRole of `get secrets` (the chart's `<fullname>-webhook-pull-secrets`).
    pub cluster_role: String,
    /// The webhook's ServiceAccount, in Zastava's namespace.
    pub service_account: String,
}

/// The namespaces among `all` whose pull Secrets the webhook may read.
pub fn granted_namespaces<'a>(all: &'a [String], zastava_namespace: &str) -> BTreeSet<&'a str> {
    all.iter()
        .map(String::as_str)
        .filter(|n| *n != zastava_namespace && !NEVER_GOVERNED.contains(n))
        .collect()
}

/// The RoleBinding to apply in `namespace` (server-side apply).
pub fn desired(
    grant: &Grant,
    cluster_role_uid: &str,
    zastava_namespace: &str,
    namespace: &str,
) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {
            "name": BINDING,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "zastava-operator"},
            "ownerReferences": [cluster_role_owner(&grant.cluster_role, cluster_role_uid)],
        },
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": grant.cluster_role,
        },
        "subjects": [{
            "kind": "ServiceAccount",
            "name": grant.service_account,
            "namespace": zastava_namespace,
        }],
    })
}

/// What to do so that exactly the granted namespaces hold an up-to-date binding: the
/// namespaces to apply it in, and those (Zastava's own, `kube-system`) to delete it from.
/// `live` maps a namespace to the binding found there.
pub fn plan<'a>(
    grant: &Grant,
    cluster_role_uid: &str,
    zastava_namespace: &str,
    granted: &BTreeSet<&'a str>,
    live: &BTreeMap<String, RoleBinding>,
) -> (Vec<&'a str>, Vec<String>) {
    let apply = granted
        .iter()
        .copied()
        .filter(|n| {
            live.get(*n)
                .is_none_or(|b| !up_to_date(b, grant, cluster_role_uid, zastava_namespace))
        })
        .collect();
    let delete = live
        .keys()
        .filter(|n| !granted.contains(n.as_str()))
        .cloned()
        .collect();
    (apply, delete)
}

fn up_to_date(
    binding: &RoleBinding,
    grant: &Grant,
    cluster_role_uid: &str,
    zastava_namespace: &str,
) -> bool {
    let subject_ok = binding.subjects.as_deref().is_some_and(|s| {
        s.len() == 1
            && s[0].kind == "ServiceAccount"
            && s[0].name == grant.service_account
            && s[0].namespace.as_deref() == Some(zastava_namespace)
    });
    let owned = binding
        .metadata
        .owner_references
        .as_deref()
        .is_some_and(|o| o.iter().any(|o| o.uid == cluster_role_uid));
    binding.role_ref.kind == "ClusterRole"
        && binding.role_ref.name == grant.cluster_role
        && subject_ok
        && owned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            cluster_role: "zastava-webhook-pull-secrets".into(),
            service_account: "zastava-webhook".into(),
        }
    }

    fn live(namespace: &str) -> RoleBinding {
        serde_json::from_value(desired(&grant(), "uid-1", "zastava-system", namespace)).unwrap()
    }

    #[test]
    fn every_namespace_but_zastavas_and_kube_system_is_granted() {
        let all: Vec<String> = ["default", "kube-system", "team", "zastava-system"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            granted_namespaces(&all, "zastava-system"),
            BTreeSet::from(["default", "team"])
        );
    }

    #[test]
    fn missing_stale_and_misplaced_bindings_are_planned() {
        let granted = BTreeSet::from(["fresh", "current", "stale-subject", "stale-owner"]);
        let mut stale_subject = live("stale-subject");
        stale_subject.subjects.as_mut().unwrap()[0].name = "someone-else".into();
        let live = BTreeMap::from([
            ("current".to_string(), live("current")),
            ("stale-subject".to_string(), stale_subject),
            (
                "stale-owner".to_string(),
                serde_json::from_value(desired(&grant(), "old-uid", "zastava-system", "x"))
                    .unwrap(),
            ),
            ("zastava-system".to_string(), live("zastava-system")),
        ]);
        let (apply, delete) = plan(&grant(), "uid-1", "zastava-system", &granted, &live);
        assert_eq!(apply, ["fresh", "stale-owner", "stale-subject"]);
        assert_eq!(delete, ["zastava-system"]);
    }

    #[test]
    fn the_binding_is_owned_by_the_cluster_role_and_names_the_webhook() {
        let b = live("team");
        assert_eq!(b.metadata.namespace.as_deref(), Some("team"));
        assert_eq!(b.role_ref.name, "zastava-webhook-pull-secrets");
        let owner = &b.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("ClusterRole", "uid-1")
        );
        let subject = &b.subjects.as_ref().unwrap()[0];
        assert_eq!(subject.namespace.as_deref(), Some("zastava-system"));
    }
}
