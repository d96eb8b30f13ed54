//! Which namespaces a `ZastavaPolicy` governs.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::policy::ZastavaPolicySpec;

/// Namespaces no policy ever governs: a broken webhook must not lock the cluster.
pub const NEVER_GOVERNED: &[&str] = &["kube-system"];

impl ZastavaPolicySpec {
    /// Whether this policy governs `namespace` (with `labels`): listed in `namespaces` or
    /// matched by `namespaceSelector`; every namespace when neither is set. `zastava_namespace`
    /// and `kube-system` are never governed.
    pub fn governs(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        zastava_namespace: &str,
    ) -> bool {
        if namespace == zastava_namespace || NEVER_GOVERNED.contains(&namespace) {
            return false;
        }
        match (&self.namespace_selector, self.namespaces.is_empty()) {
            (None, true) => true,
            (selector, _) => {
                self.namespaces.iter().any(|n| n == namespace)
                    || selector
                        .as_ref()
                        .is_some_and(|s| selector_matches(s, labels))
            }
        }
    }

    /// Whether a verification that cannot complete admits the workload in `namespace`.
    pub fn fails_open(&self, namespace: &str) -> bool {
        self.fail_open_namespaces.iter().any(|n| n == namespace)
    }
}

/// Kubernetes label-selector semantics: every `matchLabels` entry and every expression must
/// hold; an empty selector matches everything. An unknown operator matches nothing (the
/// operator reports such a policy as invalid).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_ok = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && expressions_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn no_selector_and_no_names_governs_all_but_system_namespaces() {
        let spec = ZastavaPolicySpec::default();
        assert!(spec.governs("team-a", &labels(&[]), "zastava-system"));
        assert!(!spec.governs("kube-system", &labels(&[]), "zastava-system"));
        assert!(!spec.governs("zastava-system", &labels(&[]), "zastava-system"));
    }

    #[test]
    fn names_and_selector_are_alternatives() {
        let spec = ZastavaPolicySpec {
            namespaces: vec!["named".into()],
            namespace_selector: Some(LabelSelector {
                match_labels: Some(labels(&[("team", "payments")]).into_iter().collect()),
                match_expressions: None,
            }),
            ..Default::default()
        };
        let z = "zastava-system";
        assert!(spec.governs("named", &labels(&[]), z));
        assert!(spec.governs("other", &labels(&[("team", "payments")]), z));
        assert!(!spec.governs("other", &labels(&[("team", "search")]), z));
    }

    #[test]
    fn expressions_follow_kubernetes_semantics() {
        let selector = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![
                expr("env", "In", &["prod", "staging"]),
                expr("legacy", "DoesNotExist", &[]),
                expr("tier", "NotIn", &["batch"]),
            ]),
        };
        assert!(selector_matches(&selector, &labels(&[("env", "prod")])));
        assert!(selector_matches(
            &selector,
            &labels(&[("env", "staging"), ("tier", "web")])
        ));
        assert!(!selector_matches(&selector, &labels(&[("env", "dev")])));
        assert!(!selector_matches(
            &selector,
            &labels(&[("env", "prod"), ("legacy", "")])
        ));
        assert!(!selector_matches(
            &selector,
            &labels(&[("env", "prod"), ("tier", "batch")])
        ));
        assert!(selector_matches(&LabelSelector::default(), &labels(&[])));
        let unknown = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![expr("env", "Near", &["prod"])]),
        };
        assert!(!selector_matches(&unknown, &labels(&[("env", "prod")])));
    }
}
