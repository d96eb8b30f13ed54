"""The Helm chart charts/zastava, rendered and linted by Helm's own Go SDK (helm-python-sdk).

Run: python3 -m unittest discover -s tests/chart   (make chart-test)
"""

from __future__ import annotations

import json
import os
import re
import sys
import unittest
from collections import Counter
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import manifests  # noqa: E402  (tests/chart/manifests.py, which imports tests/e2e/helm.py)

helm = manifests.helm  # tests/e2e/helm.py
sdk = helm.helm  # helm_python

ROOT = manifests.ROOT
CHART = manifests.CHART
NS = "zastava-system"
DIGEST = "sha256:" + "ab" * 32


def parse(document: str) -> dict[str, Any]:
    """One YAML document, parsed by Helm's own YAML reader."""
    parsed: dict[str, Any] = sdk.values_from_yaml(document)
    return parsed


def render(
    values: dict[str, Any] | None = None,
    *,
    name: str = "zastava",
    kube_version: str | None = None,
    api_versions: list[str] | None = None,
) -> list[dict[str, Any]]:
    with sdk.Chart.load(CHART) as chart:
        rendered = helm.render(
            chart, values or {}, name=name, namespace=NS,
            kube_version=kube_version, api_versions=api_versions,
        )
    return [parse(doc) for _, _, doc in helm.documents(rendered)]


def kinds(objects: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((o["kind"], o["metadata"]["name"]) for o in objects)


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (o["metadata"]["name"], o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in ("Deployment", "DaemonSet", "StatefulSet", "Job")
    ]


def container(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    containers = one(objects, kind, name)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def args(objects: list[dict[str, Any]], kind: str, name: str) -> list[str]:
    return container(objects, kind, name)["args"]


def rules(objects: list[dict[str, Any]], kind: str, name: str) -> list[dict[str, Any]]:
    return one(objects, kind, name)["rules"]


def grants(rule_list: list[dict[str, Any]], group: str, resource: str, verb: str) -> list[dict]:
    return [
        r for r in rule_list
        if group in r.get("apiGroups", []) and resource in r.get("resources", [])
        and verb in r.get("verbs", [])
    ]


def rust_metric_names() -> set[str]:
    """Every `zastava_*` metric name registered in the components' Rust sources."""
    names = set()
    for component in ("operator", "webhook", "observer", "shell", "registry"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, component, "src")):
            for file in files:
                if file.endswith(".rs"):
                    with open(os.path.join(dirpath, file), encoding="utf-8") as f:
                        names.update(re.findall(r'"(zastava_[a-z0-9_]+)"', f.read()))
    return names


def metric_names(expression: str) -> set[str]:
    """The zastava_* series an expression reads, histogram suffixes taken off."""
    return {
        re.sub(r"_(bucket|sum|count)$", "", m)
        for m in re.findall(r"\bzastava_[a-z0-9_]+", expression)
    }


ALL_TOGGLES: dict[str, Any] = {
    "metrics": {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "dashboard": {"enabled": True},
    }
}


class Lint(unittest.TestCase):
    def test_helm_lint_passes_strict_for_kubernetes_1_20_and_today(self):
        for kube_version in ("v1.20.2", None):
            report = sdk.lint(CHART, strict=True, kube_version=kube_version)
            self.assertEqual(report["total_charts_linted"], 1)
            self.assertEqual(report["errors"], [], report)
            problems = [m for m in report["messages"] if m["severity"] >= 2]
            self.assertEqual(problems, [], report)

    def test_lint_fails_on_a_broken_values_file(self):
        report = sdk.lint(CHART, {"webhook": {"tls": {"mode": "acme"}}})
        self.assertTrue(report["errors"] or any(m["severity"] == 3 for m in report["messages"]))

    def test_chart_metadata(self):
        with sdk.Chart.load(CHART) as chart:
            meta = chart.metadata
        self.assertEqual(
            (meta["apiVersion"], meta["name"], meta["version"], meta["appVersion"]),
            ("v2", "zastava", "0.1.0", "0.1.0"),
        )


class DefaultRender(unittest.TestCase):
    def setUp(self):
        self.objects = render()

    def test_exactly_the_expected_objects(self):
        expected = Counter({
            ("ServiceAccount", "zastava-operator"): 1,
            ("ServiceAccount", "zastava-webhook"): 1,
            ("ServiceAccount", "zastava-observer"): 1,
            ("ClusterRole", "zastava-operator"): 1,
            ("ClusterRole", "zastava-webhook"): 1,
            ("ClusterRole", "zastava-webhook-pull-secrets"): 1,
            ("ClusterRole", "zastava-observer"): 1,
            ("ClusterRoleBinding", "zastava-operator"): 1,
            ("ClusterRoleBinding", "zastava-webhook"): 1,
            ("ClusterRoleBinding", "zastava-observer"): 1,
            ("Role", "zastava-operator"): 1,
            ("Role", "zastava-webhook"): 1,
            ("RoleBinding", "zastava-operator"): 1,
            ("RoleBinding", "zastava-webhook"): 1,
            ("Deployment", "zastava-operator"): 1,
            ("Deployment", "zastava-webhook"): 1,
            ("DaemonSet", "zastava-observer"): 1,
            ("Service", "zastava-webhook"): 1,
            ("PodDisruptionBudget", "zastava-webhook"): 1,
        })
        self.assertEqual(kinds(self.objects), expected)

    def test_namespaced_objects_are_in_the_release_namespace(self):
        cluster_scoped = {"ClusterRole", "ClusterRoleBinding"}
        for o in self.objects:
            if o["kind"] in cluster_scoped:
                self.assertNotIn("namespace", o["metadata"], o["metadata"]["name"])
            else:
                self.assertEqual(o["metadata"]["namespace"], NS, o["kind"])

    def test_two_replicas_spread_but_nothing_hard_required(self):
        for name in ("zastava-operator", "zastava-webhook"):
            spec = one(self.objects, "Deployment", name)["spec"]
            self.assertEqual(spec["replicas"], 2)
            pod = spec["template"]["spec"]
            anti = pod["affinity"]["podAntiAffinity"]
            self.assertNotIn("requiredDuringSchedulingIgnoredDuringExecution", anti)
            term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
            self.assertEqual(term["topologyKey"], "kubernetes.io/hostname")
            self.assertEqual(
                term["labelSelector"]["matchLabels"], spec["selector"]["matchLabels"]
            )
            spread = pod["topologySpreadConstraints"]
            self.assertEqual([s["whenUnsatisfiable"] for s in spread], ["ScheduleAnyway"])
            self.assertEqual(spread[0]["labelSelector"]["matchLabels"], spec["selector"]["matchLabels"])
            self.assertNotIn("nodeSelector", pod)

    def test_selectors_match_the_pod_labels_and_the_service(self):
        for kind, name in (("Deployment", "zastava-operator"), ("Deployment", "zastava-webhook"),
                           ("DaemonSet", "zastava-observer")):
            spec = one(self.objects, kind, name)["spec"]
            labels = spec["template"]["metadata"]["labels"]
            for k, v in spec["selector"]["matchLabels"].items():
                self.assertEqual(labels[k], v)
            self.assertEqual(labels["app.kubernetes.io/name"], name)
        service = one(self.objects, "Service", "zastava-webhook")
        webhook = one(self.objects, "Deployment", "zastava-webhook")
        self.assertEqual(service["spec"]["selector"], webhook["spec"]["selector"]["matchLabels"])
        pdb = one(self.objects, "PodDisruptionBudget", "zastava-webhook")
        self.assertEqual(pdb["spec"]["selector"]["matchLabels"], service["spec"]["selector"])

    def test_webhook_service_443_to_https_8443_and_probes_on_8080(self):
        service = one(self.objects, "Service", "zastava-webhook")
        self.assertEqual(
            [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]],
            [("https", 443, "https")],
        )
        ports = {p["name"]: p["containerPort"]
                 for p in container(self.objects, "Deployment", "zastava-webhook")["ports"]}
        self.assertEqual(ports, {"https": 8443, "http": 8080})
        for kind, name in (("Deployment", "zastava-operator"), ("Deployment", "zastava-webhook"),
                           ("DaemonSet", "zastava-observer")):
            c = container(self.objects, kind, name)
            self.assertEqual({p["name"]: p["containerPort"] for p in c["ports"]}["http"], 8080)
            self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "http"})
            self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "http"})

    def test_every_name_the_code_uses_is_passed_and_matches_the_objects(self):
        operator = args(self.objects, "Deployment", "zastava-operator")
        for flag in (
            "--lease-name=zastava-operator",
            "--webhook-service=zastava-webhook",
            "--webhook-service-port=443",
            "--webhook-config-name=zastava-webhook",
            "--webhook-config-owner-cluster-role=zastava-operator",
            "--webhook-tls-secret=zastava-webhook-tls",
            "--webhook-ca-secret=zastava-webhook-ca",
            "--webhook-timeout-seconds=5",
            "--lease-duration-seconds=15",
        ):
            self.assertIn(flag, operator)
        webhook = args(self.objects, "Deployment", "zastava-webhook")
        self.assertEqual(webhook[0], "serve")
        self.assertIn("--tls-secret=zastava-webhook-tls", webhook)
        self.assertIn("--registry-timeout-ms=3000", webhook)
        self.assertIn("--verifier-lease=zastava-webhook-verifier", webhook)
        lease = grants(rules(self.objects, "Role", "zastava-webhook"),
                       "coordination.k8s.io", "leases", "patch")
        self.assertEqual([r["resourceNames"] for r in lease], [["zastava-webhook-verifier"]])
        self.assertEqual(args(self.objects, "DaemonSet", "zastava-observer"), ["run"])
        # The Role's named rules follow the same names.
        role = rules(self.objects, "Role", "zastava-operator")
        named = {n for r in role for n in r.get("resourceNames", [])}
        self.assertEqual(named, {"zastava-webhook-tls", "zastava-webhook-ca", "zastava-operator"})
        owner = grants(rules(self.objects, "ClusterRole", "zastava-operator"),
                       "rbac.authorization.k8s.io", "clusterroles", "get")
        self.assertEqual([r["resourceNames"] for r in owner],
                         [["zastava-operator"], ["zastava-webhook-pull-secrets"]])
        self.assertEqual(owner[0]["verbs"], ["get"])
        self.assertEqual(owner[1]["verbs"], ["get", "bind"])

    def test_observer_mounts_and_environment(self):
        c = container(self.objects, "DaemonSet", "zastava-observer")
        pod = one(self.objects, "DaemonSet", "zastava-observer")["spec"]["template"]["spec"]
        self.assertTrue(pod["hostPID"])
        self.assertNotIn("hostNetwork", pod)
        self.assertEqual(pod["tolerations"], [{"operator": "Exists"}])
        env = {e["name"]: e.get("value") for e in c["env"]}
        self.assertEqual(env["ZASTAVA_CRI_SOCKET"], "/run/containerd/containerd.sock")
        self.assertEqual(env["ZASTAVA_PROC_ROOT"], "/host/proc")
        self.assertEqual(env["ZASTAVA_HOST_ROOT"], "/host")
        self.assertNotIn("ZASTAVA_BACKEND_URL", env)
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        for name, mount_path, host_path in (
            ("proc", "/host/proc", "/proc"),
            ("cri-socket", "/run/containerd/containerd.sock", "/run/containerd/containerd.sock"),
            ("runtime-state", "/host/var/lib/containerd", "/var/lib/containerd"),
        ):
            self.assertEqual(mounts[name]["mountPath"], mount_path)
            self.assertTrue(mounts[name]["readOnly"], name)
            self.assertEqual(volumes[name]["hostPath"]["path"], host_path)
        self.assertFalse(mounts["events"].get("readOnly", False))
        self.assertIn("emptyDir", volumes["events"])
        self.assertEqual(
            [n for n, m in mounts.items() if not m.get("readOnly")], ["events"],
            "the event buffer is the one writable mount",
        )

    def test_default_images_use_the_app_version_tag(self):
        self.assertEqual(container(self.objects, "Deployment", "zastava-operator")["image"],
                         "zastava/operator:0.1.0")
        self.assertEqual(container(self.objects, "Deployment", "zastava-webhook")["image"],
                         "zastava/webhook:0.1.0")
        self.assertEqual(container(self.objects, "DaemonSet", "zastava-observer")["image"],
                         "zastava/observer:0.1.0")


class Names(unittest.TestCase):
    def test_another_release_renames_everything_consistently(self):
        objects = render(name="edge")
        names = {n for _, n in kinds(objects)}
        self.assertTrue(all(n.startswith("edge-zastava-") for n in names), names)
        operator = args(objects, "Deployment", "edge-zastava-operator")
        self.assertIn("--webhook-service=edge-zastava-webhook", operator)
        self.assertIn("--webhook-config-name=edge-zastava-webhook", operator)
        self.assertIn("--webhook-config-owner-cluster-role=edge-zastava-operator", operator)
        self.assertIn("--lease-name=edge-zastava-operator", operator)
        self.assertIn("--webhook-ca-secret=edge-zastava-webhook-ca", operator)
        vwc = grants(rules(objects, "ClusterRole", "edge-zastava-operator"),
                     "admissionregistration.k8s.io", "validatingwebhookconfigurations", "patch")
        self.assertEqual(vwc[0]["resourceNames"], ["edge-zastava-webhook"])
        # The TLS Secret keeps its configured name unless emptied.
        self.assertIn("--webhook-tls-secret=zastava-webhook-tls", operator)
        renamed = render({"webhook": {"tls": {"secretName": ""}}}, name="edge")
        self.assertIn("--webhook-tls-secret=edge-zastava-webhook-tls",
                      args(renamed, "Deployment", "edge-zastava-operator"))
        self.assertIn("--tls-secret=edge-zastava-webhook-tls",
                      args(renamed, "Deployment", "edge-zastava-webhook"))

    def test_a_release_named_zastava_something_is_not_doubled(self):
        objects = render(name="zastava-e2e")
        self.assertIn(("Deployment", "zastava-e2e-operator"), kinds(objects))


class TlsModes(unittest.TestCase):
    def test_csr_mode_uses_the_operators_signer(self):
        objects = render({"webhook": {"tls": {"mode": "csr"}}})
        operator = args(objects, "Deployment", "zastava-operator")
        self.assertIn("--webhook-ca-secret=zastava-webhook-ca", operator)
        self.assertNotIn("--webhook-existing-secret", operator)
        cluster = rules(objects, "ClusterRole", "zastava-operator")
        self.assertTrue(grants(cluster, "certificates.k8s.io", "certificatesigningrequests", "create"))
        signer = grants(cluster, "certificates.k8s.io", "signers", "sign")
        self.assertEqual(signer[0]["resourceNames"], ["zastava.stellaops.io/webhook-serving"])
        role = rules(objects, "Role", "zastava-operator")
        self.assertTrue(grants(role, "", "secrets", "create"))
        self.assertNotIn("Certificate", {o["kind"] for o in objects})

    def test_secret_mode_reads_an_existing_secret_and_writes_none(self):
        objects = render({"webhook": {"tls": {"mode": "secret", "secretName": "my-tls"}}})
        operator = args(objects, "Deployment", "zastava-operator")
        self.assertIn("--webhook-existing-secret", operator)
        self.assertIn("--webhook-tls-secret=my-tls", operator)
        self.assertFalse([a for a in operator if a.startswith("--webhook-ca-secret")])
        self.assertFalse([a for a in operator if a.startswith("--webhook-cert-manager-certificate")])
        self.assertIn("--tls-secret=my-tls", args(objects, "Deployment", "zastava-webhook"))
        cluster = rules(objects, "ClusterRole", "zastava-operator")
        self.assertFalse([r for r in cluster if "certificates.k8s.io" in r["apiGroups"]])
        role = rules(objects, "Role", "zastava-operator")
        for verb in ("create", "patch", "delete"):
            self.assertFalse(grants(role, "", "secrets", verb), verb)
        # Key Secrets and the TLS Secret are watched by metadata in Zastava's namespace.
        watched = grants(role, "", "secrets", "watch")
        self.assertEqual([r.get("resourceNames") for r in watched], [None])
        self.assertNotIn("Certificate", {o["kind"] for o in objects})

    def test_cert_manager_mode_renders_a_certificate_for_the_service(self):
        objects = render({"webhook": {"tls": {
            "mode": "certManager",
            "certManager": {"issuerRef": {"name": "ca-issuer", "kind": "ClusterIssuer"}},
        }}})
        certificate = one(objects, "Certificate", "zastava-webhook")
        self.assertEqual(certificate["apiVersion"], "cert-manager.io/v1")
        self.assertEqual(certificate["spec"]["secretName"], "zastava-webhook-tls")
        self.assertEqual(certificate["spec"]["issuerRef"],
                         {"name": "ca-issuer", "kind": "ClusterIssuer", "group": "cert-manager.io"})
        self.assertIn("zastava-webhook.zastava-system.svc", certificate["spec"]["dnsNames"])
        operator = args(objects, "Deployment", "zastava-operator")
        self.assertIn("--webhook-existing-secret", operator)
        self.assertIn("--webhook-cert-manager-certificate=zastava-system/zastava-webhook", operator)
        self.assertFalse(grants(rules(objects, "ClusterRole", "zastava-operator"),
                                "certificates.k8s.io", "certificatesigningrequests", "create"))

    def test_cert_manager_mode_requires_an_issuer(self):
        with self.assertRaisesRegex(sdk.HelmError, "issuerRef.name is required"):
            render({"webhook": {"tls": {"mode": "certManager"}}})


class Toggles(unittest.TestCase):
    def test_metrics_objects_only_when_enabled(self):
        default = {o["kind"] for o in render()}
        for kind in ("ServiceMonitor", "PrometheusRule", "ConfigMap"):
            self.assertNotIn(kind, default)
        objects = render(ALL_TOGGLES)
        monitor = one(objects, "ServiceMonitor", "zastava")
        self.assertEqual(monitor["spec"]["endpoints"][0]["port"], "http")
        self.assertEqual(monitor["spec"]["endpoints"][0]["interval"], "30s")
        services = [o for o in objects if o["kind"] == "Service"
                    and o["metadata"]["labels"].get("zastava.stellaops.io/metrics") == "true"]
        self.assertEqual(sorted(s["metadata"]["name"] for s in services), [
            "zastava-observer-metrics", "zastava-operator-metrics", "zastava-webhook-metrics"])
        for s in services:
            for k, v in monitor["spec"]["selector"]["matchLabels"].items():
                self.assertEqual(s["metadata"]["labels"][k], v)
        one(objects, "PrometheusRule", "zastava")
        dashboard = one(objects, "ConfigMap", "zastava-dashboard")
        self.assertEqual(dashboard["metadata"]["labels"]["grafana_dashboard"], "1")
        self.assertEqual(json.loads(dashboard["data"]["zastava.json"])["uid"], "zastava")

    def test_each_metrics_toggle_alone(self):
        for key, kind in (("serviceMonitor", "ServiceMonitor"), ("prometheusRule", "PrometheusRule"),
                          ("dashboard", "ConfigMap")):
            present = {o["kind"] for o in render({"metrics": {key: {"enabled": True}}})}
            self.assertIn(kind, present, key)
            others = {"ServiceMonitor", "PrometheusRule", "ConfigMap"} - {kind}
            self.assertFalse(present & others, key)

    def test_client_auth_mounts_the_ca_bundle_and_requires_client_certificates(self):
        webhook = container(render(), "Deployment", "zastava-webhook")
        self.assertFalse([a for a in webhook["args"] if a.startswith("--client-ca-file")])
        self.assertNotIn("volumeMounts", webhook)
        bundle = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        objects = render({"webhook": {"clientAuth": {"caBundle": bundle}}})
        ca = one(objects, "ConfigMap", "zastava-webhook-client-ca")
        self.assertEqual(ca["data"]["ca.crt"], bundle)
        deployment = one(objects, "Deployment", "zastava-webhook")
        pod = deployment["spec"]["template"]
        webhook = container(objects, "Deployment", "zastava-webhook")
        self.assertIn("--client-ca-file=/etc/zastava/client-ca/ca.crt", webhook["args"])
        self.assertEqual(webhook["volumeMounts"], [
            {"name": "client-ca", "mountPath": "/etc/zastava/client-ca", "readOnly": True}])
        self.assertEqual(pod["spec"]["volumes"], [
            {"name": "client-ca", "configMap": {"name": "zastava-webhook-client-ca"}}])
        # A new bundle rolls the pods (it is read at start).
        other = render({"webhook": {"clientAuth": {"caBundle": bundle + bundle}}})
        annotation = "checksum/client-ca"
        self.assertNotEqual(
            pod["metadata"]["annotations"][annotation],
            one(other, "Deployment", "zastava-webhook")["spec"]["template"]["metadata"]["annotations"][annotation])

    def test_observer_disabled_leaves_no_observer_object(self):
        objects = render({"observer": {"enabled": False}, **ALL_TOGGLES})
        names = [n for _, n in kinds(objects)]
        self.assertFalse([n for n in names if "observer" in n], names)
        self.assertNotIn("DaemonSet", {o["kind"] for o in objects})

    def test_pdb_on_off_and_its_api_version(self):
        self.assertNotIn("PodDisruptionBudget",
                         {o["kind"] for o in render({"webhook": {"podDisruptionBudget": {"enabled": False}}})})
        pdb = one(render({"webhook": {"podDisruptionBudget": {"minAvailable": "50%"}}}),
                  "PodDisruptionBudget", "zastava-webhook")
        self.assertEqual(pdb["spec"]["minAvailable"], "50%")
        old = one(render(kube_version="v1.20.2"), "PodDisruptionBudget", "zastava-webhook")
        self.assertEqual(old["apiVersion"], "policy/v1beta1")
        served = one(render(kube_version="v1.20.2", api_versions=["policy/v1/PodDisruptionBudget"]),
                     "PodDisruptionBudget", "zastava-webhook")
        self.assertEqual(served["apiVersion"], "policy/v1")
        new = one(render(kube_version="v1.30.0"), "PodDisruptionBudget", "zastava-webhook")
        self.assertEqual(new["apiVersion"], "policy/v1")

    def test_digest_wins_over_the_tag_and_the_registry_prefixes_all(self):
        objects = render({
            "image": {"registry": "10.87.0.1:5000", "tag": "v9"},
            "operator": {"image": {"digest": DIGEST}},
        })
        self.assertEqual(container(objects, "Deployment", "zastava-operator")["image"],
                         f"10.87.0.1:5000/zastava/operator@{DIGEST}")
        self.assertEqual(container(objects, "Deployment", "zastava-webhook")["image"],
                         "10.87.0.1:5000/zastava/webhook:v9")
        self.assertEqual(container(objects, "DaemonSet", "zastava-observer")["image"],
                         "10.87.0.1:5000/zastava/observer:v9")
        every = render({"image": {"registry": "reg.test"}, "operator": {"image": {"digest": DIGEST}},
                        "webhook": {"image": {"digest": DIGEST}}, "observer": {"image": {"digest": DIGEST}}})
        for _, pod in pod_specs(every):
            for c in pod["containers"]:
                self.assertRegex(c["image"], r"^reg\.test/zastava/[a-z]+@sha256:[0-9a-f]{64}$")

    def test_the_decision_deadline_is_one_second_inside_the_webhook_timeout(self):
        for timeout, deadline in ((5, "4000"), (10, "9000")):
            args = container(render({"webhook": {"timeoutSeconds": timeout}}),
                             "Deployment", "zastava-webhook")["args"]
            self.assertIn(f"--decision-deadline-ms={deadline}", args)

    def test_insecure_registries_and_backend_reach_webhook_and_observer(self):
        objects = render({"registries": {"insecure": ["10.0.0.1:5000", "reg.test:80"]},
                          "observer": {"backendUrl": "https://scanner.test",
                                       "criSocket": "/var/run/crio/crio.sock",
                                       "runtimeStateDir": "/var/lib/containers/"}})
        for kind, name in (("Deployment", "zastava-webhook"), ("DaemonSet", "zastava-observer")):
            env = {e["name"]: e.get("value") for e in container(objects, kind, name)["env"]}
            self.assertEqual(env["ZASTAVA_INSECURE_REGISTRIES"], "10.0.0.1:5000,reg.test:80")
        observer = container(objects, "DaemonSet", "zastava-observer")
        env = {e["name"]: e.get("value") for e in observer["env"]}
        self.assertEqual(env["ZASTAVA_BACKEND_URL"], "https://scanner.test")
        self.assertEqual(env["ZASTAVA_CRI_SOCKET"], "/var/run/crio/crio.sock")
        mounts = {m["name"]: m["mountPath"] for m in observer["volumeMounts"]}
        self.assertEqual(mounts["runtime-state"], "/host/var/lib/containers")
        self.assertEqual(mounts["cri-socket"], "/var/run/crio/crio.sock")
        default = {e["name"] for e in container(render(), "Deployment", "zastava-webhook")["env"]}
        self.assertNotIn("ZASTAVA_INSECURE_REGISTRIES", default)


class Schema(unittest.TestCase):
    def rejects(self, values: dict[str, Any], pattern: str):
        with sdk.Chart.load(CHART) as chart:
            with self.assertRaisesRegex(sdk.HelmError, pattern):
                chart.validate_schema(chart.merge_values(values))
            with self.assertRaises(sdk.HelmError):
                chart.render(values, name="zastava", namespace=NS)

    def test_defaults_and_every_tls_mode_validate(self):
        with sdk.Chart.load(CHART) as chart:
            for mode in ("csr", "secret", "certManager"):
                chart.validate_schema(chart.merge_values({"webhook": {"tls": {"mode": mode}}}))

    def test_a_bad_tls_mode_is_rejected(self):
        self.rejects({"webhook": {"tls": {"mode": "selfSigned"}}}, "tls/mode")

    def test_an_unknown_top_level_key_is_rejected(self):
        self.rejects({"replicaCount": 3}, "replicaCount")

    def test_a_malformed_digest_and_lease_duration_are_rejected(self):
        self.rejects({"webhook": {"image": {"digest": "sha256:1234"}}}, "digest")
        self.rejects({"operator": {"leaseDurationSeconds": 2}}, "leaseDurationSeconds")
        self.rejects({"webhook": {"timeoutSeconds": 31}}, "timeoutSeconds")

    def test_a_client_ca_bundle_that_is_not_pem_is_rejected(self):
        self.rejects({"webhook": {"clientAuth": {"caBundle": "/etc/ca.crt"}}}, "caBundle")


VARIANTS: list[dict[str, Any]] = [
    {},
    {"webhook": {"tls": {"mode": "secret"}}},
    {"webhook": {"tls": {"mode": "certManager", "certManager": {"issuerRef": {"name": "x"}}}}},
    ALL_TOGGLES,
    {"observer": {"enabled": False}},
    {"webhook": {"clientAuth": {"caBundle": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}}},
]


class PodSecurity(unittest.TestCase):
    def test_operator_and_webhook_are_restricted(self):
        for values in VARIANTS:
            for name, pod in pod_specs(render(values)):
                if name == "zastava-observer":
                    continue
                self.assertEqual(pod["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"})
                self.assertTrue(pod["securityContext"]["runAsNonRoot"])
                for c in pod["containers"] + pod.get("initContainers", []):
                    sc = c["securityContext"]
                    self.assertTrue(sc["runAsNonRoot"], name)
                    self.assertEqual(sc["runAsUser"], 65532, name)
                    self.assertTrue(sc["readOnlyRootFilesystem"], name)
                    self.assertFalse(sc["allowPrivilegeEscalation"], name)
                    self.assertEqual(sc["capabilities"], {"drop": ["ALL"]}, name)
                    self.assertEqual(sc["seccompProfile"], {"type": "RuntimeDefault"}, name)
                    self.assertNotIn("privileged", sc)

    def test_observer_is_root_with_two_capabilities_only(self):
        pod = dict(pod_specs(render()))["zastava-observer"]
        self.assertEqual(pod["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"})
        (c,) = pod["containers"]
        sc = c["securityContext"]
        self.assertEqual(sc["runAsUser"], 0)
        self.assertFalse(sc["allowPrivilegeEscalation"])
        self.assertTrue(sc["readOnlyRootFilesystem"])
        self.assertEqual(sc["capabilities"], {"drop": ["ALL"], "add": ["SYS_PTRACE", "DAC_READ_SEARCH"]})
        self.assertNotIn("privileged", sc)

    def test_every_container_has_resources(self):
        for values in VARIANTS:
            for name, pod in pod_specs(render(values)):
                for c in pod["containers"]:
                    self.assertIn("memory", c["resources"]["requests"], name)
                    self.assertIn("cpu", c["resources"]["requests"], name)
                    self.assertIn("memory", c["resources"]["limits"], name)


class Rbac(unittest.TestCase):
    def all_rules(self, values: dict[str, Any]):
        for o in render(values):
            if o["kind"] in ("ClusterRole", "Role"):
                for r in o["rules"]:
                    yield o, r

    def test_no_wildcards(self):
        for values in VARIANTS:
            for role, r in self.all_rules(values):
                for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                    for item in r.get(field, []):
                        self.assertNotIn("*", item, f"{role['kind']}/{role['metadata']['name']}: {r}")
                self.assertNotIn("nonResourceURLs", r)

    def test_no_cluster_wide_list_or_watch_of_secrets(self):
        for values in VARIANTS:
            for role, r in self.all_rules(values):
                if "secrets" not in r["resources"] or "" not in r["apiGroups"]:
                    continue
                if role["kind"] == "ClusterRole":
                    # The webhook's imagePullSecrets get, bound per namespace by the operator
                    # (never cluster-wide); nothing else.
                    self.assertEqual(role["metadata"]["name"], "zastava-webhook-pull-secrets")
                    self.assertEqual(r["verbs"], ["get"], r)
                else:
                    self.assertEqual(role["metadata"]["namespace"], NS)

    def test_the_webhook_reads_no_secret_of_its_namespace_but_its_serving_certificate(self):
        for values in VARIANTS:
            objects = render(values)
            tls = [a for a in args(objects, "Deployment", "zastava-webhook")
                   if a.startswith("--tls-secret=")][0].split("=", 1)[1]
            secret_rules = [r for r in rules(objects, "Role", "zastava-webhook")
                            if "secrets" in r["resources"]]
            self.assertEqual(secret_rules, [{"apiGroups": [""], "resources": ["secrets"],
                                             "resourceNames": [tls],
                                             "verbs": ["get", "list", "watch"]}],
                             values)

    def test_backend_secrets_are_readable_by_name_and_never_zastavas_own_keys(self):
        objects = render({"webhook": {"backendSecrets": ["scanner-token", "scanner-client"]}})
        secret_rules = [r for r in rules(objects, "Role", "zastava-webhook")
                        if "secrets" in r["resources"]]
        self.assertEqual(secret_rules[1], {"apiGroups": [""], "resources": ["secrets"],
                                           "resourceNames": ["scanner-token", "scanner-client"],
                                           "verbs": ["get"]})
        self.assertIn("--webhook-backend-secrets=scanner-token,scanner-client",
                      args(objects, "Deployment", "zastava-operator"))
        # Without any, the operator is told so (every backend Secret a policy names is
        # reported as unreadable) and the Role names none.
        self.assertIn("--webhook-backend-secrets=", args(render(), "Deployment", "zastava-operator"))
        for own in ("zastava-webhook-tls", "zastava-webhook-ca"):
            with self.assertRaises(Exception) as refused:
                render({"webhook": {"backendSecrets": [own]}})
            self.assertIn(f"webhook.backendSecrets may not name {own}", str(refused.exception))

    def test_policy_reports_are_written_unless_off(self):
        for value, granted in (("auto", True), ("on", True), ("off", False)):
            objects = render({"webhook": {"policyReports": value}})
            self.assertIn(f"--policy-reports={value}", args(objects, "Deployment", "zastava-webhook"))
            reports = grants(rules(objects, "ClusterRole", "zastava-webhook"),
                             "wgpolicyk8s.io", "policyreports", "patch")
            self.assertEqual(bool(reports), granted, value)
        with self.assertRaises(Exception):
            render({"webhook": {"policyReports": "sometimes"}})

    def test_no_role_escalation_verbs(self):
        for values in VARIANTS:
            for role, r in self.all_rules(values):
                for verb in ("escalate", "impersonate"):
                    self.assertNotIn(verb, r["verbs"], r)
                if "bind" in r["verbs"]:
                    # Only the operator, only the webhook's pull-Secret ClusterRole.
                    self.assertEqual(role["metadata"]["name"], "zastava-operator")
                    self.assertEqual(r["resourceNames"], ["zastava-webhook-pull-secrets"])

    def test_the_pull_secret_role_is_bound_only_by_the_operator_per_namespace(self):
        objects = render()
        one(objects, "ClusterRole", "zastava-webhook-pull-secrets")
        bound = [o["roleRef"]["name"] for o in objects
                 if o["kind"] in ("ClusterRoleBinding", "RoleBinding")]
        self.assertNotIn("zastava-webhook-pull-secrets", bound)
        operator = args(objects, "Deployment", "zastava-operator")
        self.assertIn("--webhook-pull-secrets-cluster-role=zastava-webhook-pull-secrets", operator)
        self.assertIn("--webhook-service-account=zastava-webhook", operator)
        webhook = rules(objects, "ClusterRole", "zastava-webhook")
        self.assertFalse([r for r in webhook if "secrets" in r["resources"]], webhook)

    def test_bindings_bind_each_role_to_its_own_service_account(self):
        objects = render()
        for o in objects:
            if o["kind"] in ("ClusterRoleBinding", "RoleBinding"):
                self.assertEqual(o["roleRef"]["name"], o["metadata"]["name"])
                self.assertEqual(o["subjects"], [{"kind": "ServiceAccount", "name": o["metadata"]["name"],
                                                  "namespace": NS}])
        for name, pod in pod_specs(objects):
            self.assertEqual(pod["serviceAccountName"], name)


class Monitoring(unittest.TestCase):
    def setUp(self):
        self.objects = render(ALL_TOGGLES)
        self.registered = rust_metric_names()
        self.assertIn("zastava_admission_decisions_total", self.registered)

    def test_prometheus_rule_carries_the_runbooks_alerts(self):
        rule = one(self.objects, "PrometheusRule", "zastava")
        alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
        latency = alerts["ZastavaRuntimeBackendLatencyHigh"]
        self.assertRegex(latency["expr"], r"histogram_quantile\(0\.95,")
        self.assertRegex(latency["expr"], r"zastava_runtime_backend_latency_ms_bucket")
        self.assertRegex(latency["expr"], r">\s*750\s*$")
        self.assertEqual(latency["for"], "5m")
        deny = alerts["ZastavaAdmissionDenySpike"]
        self.assertRegex(deny["expr"], r'zastava_admission_decisions_total\{decision="Deny"\}')
        self.assertRegex(deny["expr"], r"\*\s*60\s*>\s*20\s*$")

    def test_prometheus_rule_reads_only_metrics_the_code_registers(self):
        rule = one(self.objects, "PrometheusRule", "zastava")
        for group in rule["spec"]["groups"]:
            for r in group["rules"]:
                used = metric_names(r["expr"])
                self.assertTrue(used, r["alert"])
                self.assertEqual(used - self.registered, set(), r["alert"])

    def test_dashboard_reads_only_metrics_the_code_registers(self):
        dashboard = json.loads(one(self.objects, "ConfigMap", "zastava-dashboard")["data"]["zastava.json"])
        used = set()
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                used |= metric_names(target["expr"])
        self.assertGreater(len(used), 10)
        self.assertEqual(used - self.registered, set())


class GeneratedFiles(unittest.TestCase):
    def test_config_default_and_the_argocd_snippet_equal_a_fresh_render(self):
        self.assertEqual(manifests.stale(), [], "run `make manifests` and commit")

    def test_config_default_is_the_default_render_plus_the_namespace(self):
        with open(os.path.join(ROOT, "config", "default", "zastava.yaml"), encoding="utf-8") as f:
            docs = [d for d in re.split(r"(?m)^---$", f.read()) if d.strip() and re.search(r"(?m)^kind:", d)]
        committed = kinds([parse(d) for d in docs])
        expected = kinds(render(kube_version=manifests.KUBE_VERSION))
        expected[("Namespace", NS)] += 1
        self.assertEqual(committed, expected)

    def test_config_holds_only_generated_files_and_samples(self):
        config = os.path.join(ROOT, "config")
        for dirpath, _, files in os.walk(config):
            rel = os.path.relpath(dirpath, config)
            if rel == "samples" or rel.startswith("samples" + os.sep):
                continue
            for file in files:
                path = os.path.join("config", rel, file) if rel != "." else os.path.join("config", file)
                self.assertIn(os.path.normpath(path), {os.path.normpath(p) for p in manifests.generated()},
                              f"{path} is not generated by make manifests")

    def test_the_chart_ships_the_crds_make_crds_writes(self):
        source = os.path.join(ROOT, "crds")
        generated = sorted(f for f in os.listdir(source) if f.endswith(".zastava.stellaops.io.yaml"))
        self.assertEqual(len(generated), 2)
        with sdk.Chart.load(CHART) as chart:
            shipped = {os.path.basename(c["filename"]): c["data"] for c in chart.crds}
        self.assertEqual(sorted(shipped), generated)
        for name in generated:
            with open(os.path.join(source, name), encoding="utf-8") as f:
                self.assertEqual(shipped[name], f.read(), f"{name}: run `make crds`")

    def test_the_argocd_snippet_embeds_each_health_check_once(self):
        text = manifests.argocd_cm()
        cm = parse(text)
        for kind, file in manifests.HEALTH_CHECKS:
            with open(os.path.join(ROOT, manifests.ARGOCD, file), encoding="utf-8") as f:
                lua = f.read()
            key = f"resource.customizations.health.zastava.stellaops.io_{kind}"
            self.assertEqual(cm["data"][key], lua)


if __name__ == "__main__":
    unittest.main()
