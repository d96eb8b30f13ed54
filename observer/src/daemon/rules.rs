//! The runtime rules for one namespace, from the `ZastavaPolicy` objects that govern it, and
//! the ports a pod declares.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;
use zastava_crds::policy::{DriftKinds, ZastavaPolicySpec};

use crate::drift::{ContainerPort, Protocol};

/// What drift the observer reports in one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeRules {
    pub kinds: DriftKinds,
    pub allowed_listening_ports: Vec<u16>,
}

/// Combines the policies governing `namespace`: a drift kind is reported when any of them
/// asks for it, and a listening port is allowed only when every one allows it (each policy
/// must hold, as at admission). A namespace no policy governs gets the defaults — every
/// kind, no extra port — so drift is visible before anyone writes a policy.
pub fn runtime_rules<'a>(
    policies: impl IntoIterator<Item = &'a ZastavaPolicySpec>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    zastava_namespace: &str,
) -> RuntimeRules {
    let governing: Vec<&ZastavaPolicySpec> = policies
        .into_iter()
        .filter(|p| p.governs(namespace, labels, zastava_namespace))
        .collect();
    let Some((first, rest)) = governing.split_first() else {
        return RuntimeRules {
            kinds: DriftKinds::default(),
            allowed_listening_ports: Vec::new(),
        };
    };
    let mut kinds = first.runtime.drift.clone();
    let mut ports = first.runtime.allowed_listening_ports.clone();
    for p in rest {
        let k = &p.runtime.drift;
        kinds.process |= k.process;
        kinds.library |= k.library;
        kinds.filesystem |= k.filesystem;
        kinds.network |= k.network;
        ports.retain(|port| p.runtime.allowed_listening_ports.contains(port));
    }
    ports.sort_unstable();
    ports.dedup();
    RuntimeRules {
        kinds,
        allowed_listening_ports: ports,
    }
}

/// The `containerPorts` of all the pod's containers (they share one network namespace).
/// Ports outside 1..=65535 or with an unknown protocol are left out: no socket matches them.
pub fn container_ports(spec: &PodSpec) -> Vec<ContainerPort> {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            Some(ContainerPort {
                port: u16::try_from(p.container_port).ok().filter(|&p| p > 0)?,
                protocol: Protocol::from_k8s(p.protocol.as_deref())?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use zastava_crds::policy::RuntimeSettings;

    fn policy(namespaces: &[&str], drift: DriftKinds, ports: &[u16]) -> ZastavaPolicySpec {
        ZastavaPolicySpec {
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
            runtime: RuntimeSettings {
                drift,
                allowed_listening_ports: ports.to_vec(),
                ..RuntimeSettings::default()
            },
            ..Default::default()
        }
    }

    fn only_network() -> DriftKinds {
        DriftKinds {
            process: false,
            library: false,
            filesystem: false,
            network: true,
        }
    }

    #[test]
    fn ungoverned_namespaces_get_the_defaults() {
        let p = policy(&["other"], only_network(), &[9090]);
        assert_eq!(
            runtime_rules([&p], "team-a", &BTreeMap::new(), "zastava-system"),
            RuntimeRules {
                kinds: DriftKinds::default(),
                allowed_listening_ports: Vec::new(),
            }
        );
    }

    #[test]
    fn one_policy_is_taken_as_it_is() {
        let p = policy(&["team-a"], only_network(), &[9090, 8443, 9090]);
        assert_eq!(
            runtime_rules([&p], "team-a", &BTreeMap::new(), "zastava-system"),
            RuntimeRules {
                kinds: only_network(),
                allowed_listening_ports: vec![8443, 9090],
            }
        );
    }

    #[test]
    fn kinds_are_joined_and_ports_intersected() {
        let a = policy(&["team-a"], only_network(), &[9090, 8443]);
        let mut process_only = DriftKinds {
            process: true,
            ..only_network()
        };
        process_only.network = false;
        let b = policy(&["team-a"], process_only, &[8443, 22]);
        let ignored = policy(&["team-b"], DriftKinds::default(), &[]);
        let rules = runtime_rules(
            [&a, &b, &ignored],
            "team-a",
            &BTreeMap::new(),
            "zastava-system",
        );
        assert_eq!(
            rules.kinds,
            DriftKinds {
                process: true,
                library: false,
                filesystem: false,
                network: true,
            }
        );
        assert_eq!(rules.allowed_listening_ports, vec![8443]);
    }

    #[test]
    fn declared_ports_of_every_container() {
        let spec: PodSpec = serde_json::from_value(serde_json::json!({
            "containers": [
                {"name": "a", "ports": [{"containerPort": 8080}, {"containerPort": 53, "protocol": "UDP"}]},
                {"name": "b", "ports": [{"containerPort": 70000}, {"containerPort": 9, "protocol": "QUIC"}]},
                {"name": "c"}
            ],
            "initContainers": [{"name": "i", "ports": [{"containerPort": 7000, "protocol": "SCTP"}]}]
        }))
        .unwrap();
        assert_eq!(
            container_ports(&spec),
            vec![
                ContainerPort {
                    port: 8080,
                    protocol: Protocol::Tcp
                },
                ContainerPort {
                    port: 53,
                    protocol: Protocol::Udp
                },
                ContainerPort {
                    port: 7000,
                    protocol: Protocol::Sctp
                },
            ]
        );
    }
}
