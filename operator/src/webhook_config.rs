//! The ValidatingWebhookConfiguration as a pure function of the ZastavaPolicy objects, the CA
//! bundle and the flags, and the namespace labels its selectors rely on. The TLS controller
//! (`tls::run`) applies both.
//!
//! Kubernetes 1.20 neither labels namespaces with `kubernetes.io/metadata.name` (that came in
//! 1.21) nor selects namespaces by name, so the operator labels namespaces itself:
//! - [`IGNORE_LABEL`] on `kube-system` and Zastava's own namespace, which both webhooks skip
//!   (a dead webhook can never lock the cluster);
//! - [`FAIL_OPEN_LABEL`] on the namespaces some policy lists in `failOpenNamespaces`: those are
//!   served by the [`FAIL_OPEN_WEBHOOK`] (`failurePolicy: Ignore`), every other namespace by the
//!   [`FAIL_CLOSED_WEBHOOK`] (`failurePolicy: Fail`).
//!
//! The webhooks match every namespace but those, not just the governed ones: a union of the
//! policies' selectors and name lists is not expressible as one selector, and the webhook
//! admits workloads of ungoverned namespaces at once.
//!
//! Installed by the chart (or `config/default`), the configuration is owned by the operator's
//! ClusterRole: uninstalling deletes that ClusterRole and the garbage collector then deletes
//! the configuration, so a removed Zastava never leaves a webhook that refuses every Pod.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::Uri;
use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, OwnerReference,
};
use k8s_openapi::ByteString;
use serde_json::Value;
use zastava_crds::governs::NEVER_GOVERNED;
use zastava_crds::ZastavaPolicy;

use crate::tls::profile::{parse_certificates, CertInfo, San};

/// On a namespace no webhook is called for.
pub const IGNORE_LABEL: &str = "zastava.stellaops.io/ignore";
/// On a namespace listed in some policy's `failOpenNamespaces`.
pub const FAIL_OPEN_LABEL: &str = "zastava.stellaops.io/fail-open";
pub const FAIL_CLOSED_WEBHOOK: &str = "fail-closed.zastava.stellaops.io";
pub const FAIL_OPEN_WEBHOOK: &str = "fail-open.zastava.stellaops.io";
/// The path the webhook serves AdmissionReviews on.
pub const WEBHOOK_PATH: &str = "/validate";
/// cert-manager's CA injector fills `caBundle` from the Certificate this annotation names.
pub const CERT_MANAGER_INJECT_CA: &str = "cert-manager.io/inject-ca-from";

/// Where the API server reaches the webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A Service (through its ClusterIP) on `port`, path [`WEBHOOK_PATH`].
    Service {
        namespace: String,
        name: String,
        port: i32,
    },
    /// A URL, for clusters where Services are not routed (the embedded e2e cluster).
    Url(String),
}

impl Target {
    /// The names the serving certificate must carry: the Service's DNS names (the API server
    /// dials `<service>.<namespace>.svc`), or the URL's host (an IP SAN for an address).
    pub fn sans(&self) -> BTreeSet<San> {
        match self {
            Target::Service {
                namespace, name, ..
            } => [
                name.clone(),
                format!("{name}.{namespace}"),
                format!("{name}.{namespace}.svc"),
            ]
            .iter()
            .map(|n| San::parse(n))
            .collect(),
            Target::Url(url) => url_host(url).map(|h| San::parse(&h)).into_iter().collect(),
        }
    }

    fn client_config(&self, ca: &CaSource) -> WebhookClientConfig {
        let (service, url) = match self {
            Target::Service {
                namespace,
                name,
                port,
            } => (
                Some(ServiceReference {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    path: Some(WEBHOOK_PATH.to_string()),
                    port: Some(*port),
                }),
                None,
            ),
            Target::Url(url) => (None, Some(url.clone())),
        };
        WebhookClientConfig {
            ca_bundle: match ca {
                CaSource::Bundle(pem) => Some(ByteString(pem.as_bytes().to_vec())),
                CaSource::CertManager(_) => None,
            },
            service,
            url,
        }
    }
}

/// The host of an `https://` webhook URL; what is wrong with it otherwise.
pub fn url_host(url: &str) -> Result<String, String> {
    let uri: Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err("the API server calls webhooks over https only".into());
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("a webhook URL must not carry user information".into());
    }
    if uri.query().is_some() {
        return Err("a webhook URL must not carry a query".into());
    }
    match uri.host() {
        Some(host) if !host.is_empty() => Ok(host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()),
        _ => Err("the URL has no host".into()),
    }
}

/// Where the webhooks' `caBundle` comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaSource {
    /// PEM certificates the operator writes into `caBundle`.
    Bundle(String),
    /// `namespace/name` of a cert-manager Certificate whose CA cert-manager injects.
    CertManager(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The name of the ValidatingWebhookConfiguration.
    pub name: String,
    pub target: Target,
    pub timeout_seconds: i32,
    /// The ClusterRole whose deletion deletes the configuration (none: it outlives the
    /// operator until someone deletes it).
    pub owner_cluster_role: Option<String>,
    /// The webhook's access to pull Secrets, granted per namespace (none: not managed).
    pub pull_secrets: Option<crate::pull_secrets::Grant>,
}

/// The owner reference that ties the configuration to the ClusterRole `name` of `uid`: not a
/// controller reference, and without `blockOwnerDeletion` (which would need rights on the
/// ClusterRole's finalizers).
pub fn cluster_role_owner(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "rbac.authorization.k8s.io/v1".into(),
        kind: "ClusterRole".into(),
        name: name.into(),
        uid: uid.into(),
        controller: None,
        block_owner_deletion: None,
    }
}

/// Every namespace some policy lists in `failOpenNamespaces`.
pub fn fail_open_namespaces(policies: &[ZastavaPolicy]) -> BTreeSet<String> {
    policies
        .iter()
        .flat_map(|p| p.spec.fail_open_namespaces.iter().cloned())
        .collect()
}

/// The labels the operator owns on `namespace` (field manager `zastava-operator-namespaces`);
/// empty when it owns none there.
pub fn namespace_labels(
    namespace: &str,
    zastava_namespace: &str,
    fail_open: &BTreeSet<String>,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    if namespace == zastava_namespace || NEVER_GOVERNED.contains(&namespace) {
        labels.insert(IGNORE_LABEL.to_string(), "true".to_string());
    }
    if fail_open.contains(namespace) {
        labels.insert(FAIL_OPEN_LABEL.to_string(), "true".to_string());
    }
    labels
}

/// Of `labels`, those under the keys the operator manages.
pub fn managed_labels(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(k, _)| *k == IGNORE_LABEL || *k == FAIL_OPEN_LABEL)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Of the exemption labels a namespace carries (`have`, see [`managed_labels`]), the keys the
/// operator did not grant it (`want`, see [`namespace_labels`]): someone with `patch
/// namespaces` set them, or a policy no longer lists the namespace. Server-side apply never
/// removes a label another field manager owns, so these are removed by [`removal_patch`].
pub fn ungranted_labels(
    have: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
) -> Vec<String> {
    have.keys()
        .filter(|key| !want.contains_key(*key))
        .cloned()
        .collect()
}

/// The JSON merge patch that removes `keys` from a namespace's labels, whoever set them;
/// conditional on `resource_version`, so a namespace changed since it was read is a conflict
/// (read again on the next pass), never a patch of labels the operator has not seen.
pub fn removal_patch(resource_version: Option<&str>, keys: &[String]) -> Value {
    let labels: serde_json::Map<String, Value> =
        keys.iter().map(|k| (k.clone(), Value::Null)).collect();
    serde_json::json!({
        "metadata": {
            "resourceVersion": resource_version,
            "labels": labels,
        }
    })
}

/// The note of the Event recorded on a namespace whose exemption label was removed.
pub fn removal_note(label: &str, value: &str) -> String {
    let granted = if label == IGNORE_LABEL {
        "only kube-system and Zastava's own namespace carry it"
    } else {
        "only namespaces a ZastavaPolicy lists in failOpenNamespaces carry it"
    };
    format!(
        "removed label {label}={value}: Zastava sets it itself and {granted}; exemptions come \
         from ZastavaPolicy objects, not from namespace labels"
    )
}

/// The configuration the operator applies.
///
/// With no ZastavaPolicy at all the configuration has no webhooks: nothing is enforced, so
/// nothing is called, and a webhook that is not deployed yet cannot block a single Pod. The
/// object itself stays, so a policy applied later only adds webhooks to it.
pub fn desired(
    settings: &Settings,
    ca: &CaSource,
    policies: &[ZastavaPolicy],
    owner: Option<OwnerReference>,
) -> ValidatingWebhookConfiguration {
    let fail_open = fail_open_namespaces(policies);
    let mut webhooks = Vec::new();
    if !policies.is_empty() {
        let mut closed = vec![requirement(IGNORE_LABEL, "DoesNotExist")];
        if !fail_open.is_empty() {
            closed.push(requirement(FAIL_OPEN_LABEL, "DoesNotExist"));
        }
        webhooks.push(webhook(FAIL_CLOSED_WEBHOOK, "Fail", closed, settings, ca));
        if !fail_open.is_empty() {
            let open = vec![
                requirement(IGNORE_LABEL, "DoesNotExist"),
                requirement(FAIL_OPEN_LABEL, "Exists"),
            ];
            webhooks.push(webhook(FAIL_OPEN_WEBHOOK, "Ignore", open, settings, ca));
        }
    }
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(settings.name.clone()),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    crate::FIELD_MANAGER.to_string(),
                ),
                (
                    "app.kubernetes.io/part-of".to_string(),
                    "zastava".to_string(),
                ),
            ])),
            annotations: match ca {
                CaSource::CertManager(certificate) => Some(BTreeMap::from([(
                    CERT_MANAGER_INJECT_CA.to_string(),
                    certificate.clone(),
                )])),
                CaSource::Bundle(_) => None,
            },
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        webhooks: Some(webhooks),
    }
}

fn requirement(key: &str, operator: &str) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.to_string(),
        operator: operator.to_string(),
        values: None,
    }
}

/// Every field is set, defaults included, so [`up_to_date`] compares like with like.
fn webhook(
    name: &str,
    failure_policy: &str,
    namespace_expressions: Vec<LabelSelectorRequirement>,
    settings: &Settings,
    ca: &CaSource,
) -> ValidatingWebhook {
    ValidatingWebhook {
        name: name.to_string(),
        admission_review_versions: vec!["v1".to_string()],
        client_config: settings.target.client_config(ca),
        failure_policy: Some(failure_policy.to_string()),
        match_policy: Some("Equivalent".to_string()),
        namespace_selector: Some(LabelSelector {
            match_expressions: Some(namespace_expressions),
            match_labels: None,
        }),
        object_selector: Some(LabelSelector::default()),
        rules: Some(rules()),
        side_effects: "None".to_string(),
        timeout_seconds: Some(settings.timeout_seconds),
        match_conditions: None,
    }
}

/// Pods, and the workloads that template them (so the webhook's cache is warm before their
/// Pods arrive). CronJobs are `batch/v1beta1` on Kubernetes 1.20 and `batch/v1` from 1.21.
///
/// A running Pod gets a new container only through the `pods/ephemeralcontainers`
/// subresource (`kubectl debug`), an UPDATE: its object is the Pod from 1.22, an
/// `EphemeralContainers` list on 1.20/1.21 (where the subresource is alpha, behind the
/// `EphemeralContainers` feature gate; a rule for a subresource a cluster does not serve
/// matches nothing). A container's image changes through an UPDATE of `pods`, which the first
/// rule covers; `pods/exec`, `attach`, `binding` and `status` add no container.
fn rules() -> Vec<RuleWithOperations> {
    let rule =
        |group: &str, version: &str, resources: &[&str], operations: &[&str]| RuleWithOperations {
            api_groups: Some(vec![group.to_string()]),
            api_versions: Some(vec![version.to_string()]),
            operations: Some(operations.iter().map(|o| o.to_string()).collect()),
            resources: Some(resources.iter().map(|r| r.to_string()).collect()),
            scope: Some("Namespaced".to_string()),
        };
    let create_update = ["CREATE", "UPDATE"];
    vec![
        rule("", "v1", &["pods"], &create_update),
        rule("", "v1", &["pods/ephemeralcontainers"], &["UPDATE"]),
        rule(
            "apps",
            "v1",
            &["deployments", "replicasets", "statefulsets", "daemonsets"],
            &create_update,
        ),
        rule("batch", "v1", &["jobs", "cronjobs"], &create_update),
        rule("batch", "v1beta1", &["cronjobs"], &create_update),
    ]
}

/// Whether `live` already is what applying `desired` would make it: the labels and
/// annotations the operator sets, and exactly its webhooks with every field it sets. Fields
/// other managers add elsewhere are left alone, as server-side apply leaves them.
pub fn up_to_date(
    live: &ValidatingWebhookConfiguration,
    desired: &ValidatingWebhookConfiguration,
) -> bool {
    let meta_ok = subset(
        &json(&desired.metadata.labels),
        &json(&live.metadata.labels),
    ) && subset(
        &json(&desired.metadata.annotations),
        &json(&live.metadata.annotations),
    ) && subset(
        &json(&desired.metadata.owner_references),
        &json(&live.metadata.owner_references),
    );
    let none = Vec::new();
    let want = desired.webhooks.as_ref().unwrap_or(&none);
    let have = live.webhooks.as_ref().unwrap_or(&none);
    meta_ok
        && want.len() == have.len()
        && want
            .iter()
            .zip(have)
            .all(|(w, h)| subset(&json(w), &json(h)))
}

/// k8s-openapi values always serialize; were one not to, it compares unequal and is applied.
fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Every field of `want` is in `have` with the same value; arrays match element-wise and have
/// the same length.
fn subset(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Null, _) => true,
        (Value::Object(w), Value::Object(h)) => w
            .iter()
            .all(|(k, v)| subset(v, h.get(k).unwrap_or(&Value::Null))),
        (Value::Array(w), Value::Array(h)) => {
            w.len() == h.len() && w.iter().zip(h).all(|(a, b)| subset(a, b))
        }
        (w, h) => w == h,
    }
}

/// Whether the API server already trusts `ca` for every webhook it may call: true when there
/// is no configuration or no webhook (nothing is called), false when a `caBundle` lacks it.
pub fn ca_published(live: Option<&ValidatingWebhookConfiguration>, ca: &CertInfo) -> bool {
    live.and_then(|vwc| vwc.webhooks.as_ref())
        .into_iter()
        .flatten()
        .all(|webhook| {
            webhook
                .client_config
                .ca_bundle
                .as_ref()
                .and_then(|bundle| parse_certificates(&bundle.0).ok())
                .is_some_and(|certs| certs.iter().any(|c| c.der == ca.der))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::{Duration, OffsetDateTime};
    use zastava_crds::ZastavaPolicySpec;

    fn policy(name: &str, fail_open: &[&str]) -> ZastavaPolicy {
        ZastavaPolicy::new(
            name,
            ZastavaPolicySpec {
                fail_open_namespaces: fail_open.iter().map(|n| n.to_string()).collect(),
                ..Default::default()
            },
        )
    }

    fn settings() -> Settings {
        Settings {
            name: "zastava-webhook".into(),
            target: Target::Service {
                namespace: "zastava-system".into(),
                name: "zastava-webhook".into(),
                port: 443,
            },
            timeout_seconds: 5,
            owner_cluster_role: None,
            pull_secrets: None,
        }
    }

    fn bundle() -> CaSource {
        CaSource::Bundle("-----BEGIN CERTIFICATE-----\n...\n".into())
    }

    fn expressions(webhook: &ValidatingWebhook) -> Vec<(String, String)> {
        webhook
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_expressions
            .iter()
            .flatten()
            .map(|e| (e.key.clone(), e.operator.clone()))
            .collect()
    }

    #[test]
    fn no_policy_means_no_webhook() {
        let vwc = desired(&settings(), &bundle(), &[], None);
        assert_eq!(vwc.metadata.name.as_deref(), Some("zastava-webhook"));
        assert_eq!(vwc.webhooks, Some(vec![]));
    }

    #[test]
    fn without_fail_open_namespaces_one_fail_closed_webhook_skips_ignored_namespaces() {
        let vwc = desired(&settings(), &bundle(), &[policy("baseline", &[])], None);
        let webhooks = vwc.webhooks.unwrap();
        assert_eq!(webhooks.len(), 1);
        let w = &webhooks[0];
        assert_eq!(w.name, FAIL_CLOSED_WEBHOOK);
        assert_eq!(w.failure_policy.as_deref(), Some("Fail"));
        assert_eq!(
            expressions(w),
            vec![(IGNORE_LABEL.to_string(), "DoesNotExist".to_string())]
        );
        assert_eq!(w.side_effects, "None");
        assert_eq!(w.admission_review_versions, vec!["v1"]);
        assert_eq!(w.match_policy.as_deref(), Some("Equivalent"));
        assert_eq!(w.timeout_seconds, Some(5));
        let service = w.client_config.service.as_ref().unwrap();
        assert_eq!(
            (service.namespace.as_str(), service.name.as_str()),
            ("zastava-system", "zastava-webhook")
        );
        assert_eq!(service.path.as_deref(), Some("/validate"));
        assert_eq!(service.port, Some(443));
        assert_eq!(
            w.client_config.ca_bundle.as_ref().unwrap().0,
            b"-----BEGIN CERTIFICATE-----\n...\n"
        );
    }

    #[test]
    fn fail_open_namespaces_get_a_webhook_of_their_own() {
        let policies = [policy("a", &["legacy"]), policy("b", &["batch", "legacy"])];
        assert_eq!(
            fail_open_namespaces(&policies),
            BTreeSet::from(["batch".to_string(), "legacy".to_string()])
        );
        let webhooks = desired(&settings(), &bundle(), &policies, None)
            .webhooks
            .unwrap();
        assert_eq!(webhooks.len(), 2);
        let (closed, open) = (&webhooks[0], &webhooks[1]);
        assert_eq!(closed.failure_policy.as_deref(), Some("Fail"));
        assert_eq!(
            expressions(closed),
            vec![
                (IGNORE_LABEL.to_string(), "DoesNotExist".to_string()),
                (FAIL_OPEN_LABEL.to_string(), "DoesNotExist".to_string()),
            ]
        );
        assert_eq!(open.name, FAIL_OPEN_WEBHOOK);
        assert_eq!(open.failure_policy.as_deref(), Some("Ignore"));
        assert_eq!(
            expressions(open),
            vec![
                (IGNORE_LABEL.to_string(), "DoesNotExist".to_string()),
                (FAIL_OPEN_LABEL.to_string(), "Exists".to_string()),
            ]
        );
        assert_eq!(open.rules, closed.rules);
    }

    #[test]
    fn rules_cover_pods_and_workload_templates_on_create_and_update() {
        let webhooks = desired(&settings(), &bundle(), &[policy("p", &[])], None)
            .webhooks
            .unwrap();
        let rules = webhooks[0].rules.clone().unwrap();
        let flat: Vec<(String, String, String, Vec<String>)> = rules
            .iter()
            .flat_map(|r| {
                assert_eq!(r.scope.as_deref(), Some("Namespaced"));
                let group = r.api_groups.clone().unwrap()[0].clone();
                let version = r.api_versions.clone().unwrap()[0].clone();
                let operations = r.operations.clone().unwrap();
                r.resources
                    .clone()
                    .unwrap()
                    .into_iter()
                    .map(move |res| (group.clone(), version.clone(), res, operations.clone()))
            })
            .collect();
        let create_update = &["CREATE", "UPDATE"][..];
        for (group, version, resource, operations) in [
            ("", "v1", "pods", create_update),
            // `kubectl debug`: a container added to a running Pod.
            ("", "v1", "pods/ephemeralcontainers", &["UPDATE"][..]),
            ("apps", "v1", "deployments", create_update),
            ("apps", "v1", "replicasets", create_update),
            ("apps", "v1", "statefulsets", create_update),
            ("apps", "v1", "daemonsets", create_update),
            ("batch", "v1", "jobs", create_update),
            ("batch", "v1", "cronjobs", create_update),
            ("batch", "v1beta1", "cronjobs", create_update),
        ] {
            let expected = (
                group.to_string(),
                version.to_string(),
                resource.to_string(),
                operations.iter().map(|o| o.to_string()).collect(),
            );
            assert!(flat.contains(&expected), "{expected:?} missing");
        }
        assert_eq!(flat.len(), 9);
    }

    #[test]
    fn a_url_target_has_no_service_and_its_host_is_the_san() {
        let mut s = settings();
        s.target = Target::Url("https://127.0.0.1:9443/validate".into());
        let webhooks = desired(&s, &bundle(), &[policy("p", &[])], None)
            .webhooks
            .unwrap();
        let config = &webhooks[0].client_config;
        assert_eq!(
            config.url.as_deref(),
            Some("https://127.0.0.1:9443/validate")
        );
        assert!(config.service.is_none());
        assert_eq!(
            s.target.sans(),
            BTreeSet::from([San::Ip([127, 0, 0, 1].into())])
        );
        assert_eq!(
            Target::Url("https://webhook.example.com/validate".into()).sans(),
            BTreeSet::from([San::Dns("webhook.example.com".into())])
        );
        assert_eq!(
            Target::Url("https://[::1]:9443/validate".into()).sans(),
            BTreeSet::from([San::Ip(std::net::Ipv6Addr::LOCALHOST.into())])
        );
    }

    #[test]
    fn a_service_target_names_the_service_dns_names() {
        assert_eq!(
            settings().target.sans(),
            BTreeSet::from([
                San::Dns("zastava-webhook".into()),
                San::Dns("zastava-webhook.zastava-system".into()),
                San::Dns("zastava-webhook.zastava-system.svc".into()),
            ])
        );
    }

    #[test]
    fn webhook_urls_must_be_https_with_a_host() {
        assert_eq!(
            url_host("https://127.0.0.1:9443/validate").unwrap(),
            "127.0.0.1"
        );
        assert!(url_host("http://127.0.0.1:9443/validate").is_err());
        assert!(url_host("https://user@host/validate").is_err());
        assert!(url_host("https://host/validate?x=1").is_err());
        assert!(url_host("/validate").is_err());
        assert!(url_host("not a url").is_err());
    }

    #[test]
    fn cert_manager_fills_the_ca_bundle_through_its_annotation() {
        let ca = CaSource::CertManager("zastava-system/zastava-webhook".into());
        let vwc = desired(&settings(), &ca, &[policy("p", &[])], None);
        assert_eq!(
            vwc.metadata.annotations.unwrap()[CERT_MANAGER_INJECT_CA],
            "zastava-system/zastava-webhook"
        );
        assert!(vwc.webhooks.unwrap()[0].client_config.ca_bundle.is_none());
    }

    #[test]
    fn system_namespaces_are_ignored_and_listed_ones_fail_open() {
        let fail_open = BTreeSet::from(["legacy".to_string()]);
        let labels = |ns| namespace_labels(ns, "zastava-system", &fail_open);
        assert_eq!(
            labels("kube-system"),
            BTreeMap::from([(IGNORE_LABEL.to_string(), "true".to_string())])
        );
        assert_eq!(
            labels("zastava-system"),
            BTreeMap::from([(IGNORE_LABEL.to_string(), "true".to_string())])
        );
        assert_eq!(
            labels("legacy"),
            BTreeMap::from([(FAIL_OPEN_LABEL.to_string(), "true".to_string())])
        );
        assert!(labels("team-a").is_empty());
        let mixed = BTreeMap::from([
            ("team".to_string(), "a".to_string()),
            (FAIL_OPEN_LABEL.to_string(), "true".to_string()),
        ]);
        assert_eq!(
            managed_labels(&mixed),
            BTreeMap::from([(FAIL_OPEN_LABEL.to_string(), "true".to_string())])
        );
    }

    #[test]
    fn exemption_labels_nobody_granted_are_removed() {
        let fail_open = BTreeSet::from(["legacy".to_string()]);
        let want = |ns| namespace_labels(ns, "zastava-system", &fail_open);
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let both = labels(&[
            ("team", "a"),
            (IGNORE_LABEL, "true"),
            (FAIL_OPEN_LABEL, "true"),
        ]);
        // A tenant exempting its own namespace loses both labels; its other labels stay.
        assert_eq!(
            ungranted_labels(&managed_labels(&both), &want("team-a")),
            vec![FAIL_OPEN_LABEL.to_string(), IGNORE_LABEL.to_string()]
        );
        // A fail-open namespace keeps fail-open and loses ignore.
        assert_eq!(
            ungranted_labels(&managed_labels(&both), &want("legacy")),
            vec![IGNORE_LABEL.to_string()]
        );
        // kube-system keeps ignore and loses fail-open.
        assert_eq!(
            ungranted_labels(&managed_labels(&both), &want("kube-system")),
            vec![FAIL_OPEN_LABEL.to_string()]
        );
        // Any value counts: `ignore=false` is still an exemption as the selector reads it
        // (`DoesNotExist`).
        let falsy = labels(&[(IGNORE_LABEL, "false")]);
        assert_eq!(
            ungranted_labels(&managed_labels(&falsy), &want("team-a")),
            vec![IGNORE_LABEL.to_string()]
        );
        // What the operator granted is left alone; the apply corrects a wrong value.
        let granted = labels(&[(IGNORE_LABEL, "yes")]);
        assert!(ungranted_labels(&managed_labels(&granted), &want("zastava-system")).is_empty());
        assert!(
            ungranted_labels(&managed_labels(&labels(&[("team", "a")])), &want("team-a"))
                .is_empty()
        );
    }

    #[test]
    fn the_removal_is_a_conditional_merge_patch_of_those_labels_only() {
        let patch = removal_patch(Some("41"), &[IGNORE_LABEL.to_string()]);
        assert_eq!(
            patch,
            serde_json::json!({"metadata": {"resourceVersion": "41",
                                            "labels": {IGNORE_LABEL: null}}})
        );
        let note = removal_note(FAIL_OPEN_LABEL, "true");
        assert!(
            note.starts_with("removed label zastava.stellaops.io/fail-open=true"),
            "{note}"
        );
        assert!(note.contains("failOpenNamespaces"), "{note}");
        assert!(note.len() <= zastava_process::events::MAX_NOTE_BYTES);
    }

    /// What the API server returns for an applied configuration: the desired fields plus
    /// metadata and fields of its own.
    fn as_served(desired: &ValidatingWebhookConfiguration) -> ValidatingWebhookConfiguration {
        let mut live = desired.clone();
        live.metadata.uid = Some("uid".into());
        live.metadata.resource_version = Some("42".into());
        live.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert("someone".into(), "else".into());
        live
    }

    #[test]
    fn drift_in_any_field_the_operator_sets_is_detected() {
        let want = desired(&settings(), &bundle(), &[policy("p", &["legacy"])], None);
        let live = as_served(&want);
        assert!(up_to_date(&live, &want));

        let mut edited = live.clone();
        edited.webhooks.as_mut().unwrap()[0].timeout_seconds = Some(29);
        assert!(!up_to_date(&edited, &want));

        let mut edited = live.clone();
        edited.webhooks.as_mut().unwrap()[1].failure_policy = Some("Fail".into());
        assert!(!up_to_date(&edited, &want));

        let mut edited = live.clone();
        edited.webhooks.as_mut().unwrap()[0]
            .namespace_selector
            .as_mut()
            .unwrap()
            .match_expressions = None;
        assert!(!up_to_date(&edited, &want));

        let mut edited = live.clone();
        edited.webhooks.as_mut().unwrap()[0].client_config.ca_bundle = None;
        assert!(!up_to_date(&edited, &want));

        let mut edited = live.clone();
        edited.webhooks.as_mut().unwrap().pop();
        assert!(!up_to_date(&edited, &want));

        // Removing every policy must remove the webhooks.
        let empty = desired(&settings(), &bundle(), &[], None);
        assert!(!up_to_date(&live, &empty));
        let mut none = live.clone();
        none.webhooks = None;
        assert!(up_to_date(&none, &empty));
    }

    #[test]
    fn the_owner_cluster_role_is_set_and_its_loss_is_drift() {
        let owner = cluster_role_owner("zastava-operator", "uid-1");
        let want = desired(&settings(), &bundle(), &[], Some(owner.clone()));
        assert_eq!(want.metadata.owner_references, Some(vec![owner]));
        assert_eq!(
            want.metadata.owner_references.as_ref().unwrap()[0].kind,
            "ClusterRole"
        );
        let live = as_served(&want);
        assert!(up_to_date(&live, &want));
        let mut orphaned = live.clone();
        orphaned.metadata.owner_references = None;
        assert!(!up_to_date(&orphaned, &want));
        // A ClusterRole made again (another uid) is a new owner.
        let again = desired(
            &settings(),
            &bundle(),
            &[],
            Some(cluster_role_owner("zastava-operator", "uid-2")),
        );
        assert!(!up_to_date(&live, &again));
    }

    #[test]
    fn a_new_ca_is_published_once_every_webhook_trusts_it() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let old = crate::tls::profile::Authority::generate(now, Duration::days(1)).unwrap();
        let new = crate::tls::profile::Authority::generate(now, Duration::days(1)).unwrap();
        let policies = [policy("p", &["legacy"])];
        let only_old = desired(
            &settings(),
            &CaSource::Bundle(old.cert.pem()),
            &policies,
            None,
        );
        assert!(!ca_published(Some(&only_old), &new.cert));
        let both = desired(
            &settings(),
            &CaSource::Bundle(crate::tls::profile::bundle_pem([&new.cert, &old.cert])),
            &policies,
            None,
        );
        assert!(ca_published(Some(&both), &new.cert));
        assert!(ca_published(Some(&both), &old.cert));
        // With nothing to call, there is nothing to wait for.
        assert!(ca_published(None, &new.cert));
        assert!(ca_published(
            Some(&desired(&settings(), &bundle(), &[], None)),
            &new.cert
        ));
    }
}
