#!/usr/bin/env python3
"""A small `helm` command line over helm-python-sdk (Helm v4's own Go SDK, import `helm_python`).

No helm binary is available from the registries this project may use; this wraps the SDK's
real chart loading, rendering, linting, release actions and OCI push:

    helm.py lint CHART [-f VALUES]... [--set K=V]... [--kube-version V]
    helm.py template CHART --namespace NS --name REL [-f VALUES]... [--set K=V]...
                     [--include-crds] [--kube-version V] [--api-versions G/V[/KIND]]...
    helm.py install REL CHART -n NS [--create-namespace] [-f ..] [--set ..] [--wait] [--timeout 300s]
    helm.py upgrade REL CHART -n NS [-f ..] [--set ..] [--wait] [--timeout 300s]
    helm.py uninstall REL -n NS [--wait] [--timeout 300s]
    helm.py package CHART DEST_DIR
    helm.py push CHART_TGZ oci://HOST/REPO [--plain-http]

CHART is a chart directory, a .tgz, or (install and upgrade) an oci:// reference. The cluster
is the one KUBECONFIG names. A Helm error is one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

try:
    import helm_python as helm
    from helm_python import _native
except ImportError as e:  # pragma: no cover - depends on the interpreter
    sys.stderr.write(f"helm.py: helm-python-sdk is not installed for {sys.executable} ({e})\n")
    sys.exit(1)

# The order `helm install` creates kinds in (Helm's releaseutil.InstallOrder); `template`
# prints in this order too, so its output reads like `helm template`'s.
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
    "PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
    "ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
    "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
    "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
    "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
    "APIService", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
]


class UsageError(Exception):
    """A mistake in the command line or its files (not Helm's)."""


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's values coalescing: maps merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def user_values(files: list[str], sets: list[str]) -> dict[str, Any]:
    """-f files in order, then --set expressions in order (later wins), as `helm` does."""
    values: dict[str, Any] = {}
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise UsageError(f"values file {path}: {e.strerror}") from e
        values = merge(values, helm.values_from_yaml(text) or {})
    for expression in sets:
        values = merge(values, helm.parse_set_string(expression))
    return values


def seconds(text: str) -> int:
    """A Go-style duration ("300s", "5m", "1h30m") or a number of seconds."""
    if text.isdigit():
        return int(text)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not parts or not any(parts.groups()):
        raise UsageError(f"--timeout {text}: expected a duration such as 300s or 5m")
    h, m, s = (int(g or 0) for g in parts.groups())
    return h * 3600 + m * 60 + s


def documents(rendered: dict[str, str]) -> list[tuple[str, str, str]]:
    """(kind, source template, document) of every non-empty rendered document."""
    out = []
    for source in sorted(rendered):
        if source.endswith("NOTES.txt"):
            continue
        for doc in re.split(r"(?m)^---[ \t]*$", rendered[source]):
            lines = [line for line in doc.splitlines() if line.strip()]
            if not lines or all(line.lstrip().startswith("#") for line in lines):
                continue
            kind = re.search(r"(?m)^kind:[ \t]*[\"']?([A-Za-z0-9]+)", doc)
            out.append((kind.group(1) if kind else "", source, doc.strip("\n")))
    return out


def install_rank(kind: str) -> int:
    return INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)


def render(
    chart: helm.Chart,
    values: dict[str, Any],
    *,
    name: str,
    namespace: str,
    kube_version: str | None = None,
    api_versions: list[str] | None = None,
) -> dict[str, str]:
    """Renders offline like `helm template`. The SDK's C ABI also takes the capabilities
    (`kube_version`, `api_versions`) the Python wrapper does not expose yet."""
    if not kube_version and not api_versions:
        return chart.render(values, name=name, namespace=namespace, is_install=True)
    opts: dict[str, Any] = {"name": name, "namespace": namespace, "is_install": True}
    if kube_version:
        opts["kube_version"] = kube_version
    if api_versions:
        opts["api_versions"] = api_versions
    # Values are validated against values.schema.json by the render either way.
    rendered = _native.call_string("helm_render", chart._raw(), json.dumps(values), json.dumps(opts))
    result: dict[str, str] = json.loads(rendered)
    return result


def template_text(
    chart_path: str,
    values: dict[str, Any],
    *,
    name: str,
    namespace: str,
    include_crds: bool = False,
    kube_version: str | None = None,
    api_versions: list[str] | None = None,
) -> str:
    """The `helm template` output: documents in install order, each under its source."""
    with helm.Chart.load(chart_path) as chart:
        out = []
        if include_crds:
            for crd in sorted(chart.crds, key=lambda c: c["filename"]):
                out.append(f"---\n# Source: {crd['filename']}\n{crd['data'].strip()}\n")
        rendered = render(
            chart, values, name=name, namespace=namespace,
            kube_version=kube_version, api_versions=api_versions,
        )
        docs = sorted(documents(rendered), key=lambda d: (install_rank(d[0]), d[1]))
        for _, source, doc in docs:
            out.append(f"---\n# Source: {source}\n{doc}\n")
    return "".join(out)


def config(namespace: str) -> helm.Config:
    kubeconfig = os.environ.get("KUBECONFIG")
    return helm.Config(kubeconfig_path=kubeconfig or None, namespace=namespace)


def chart_ref(chart: str) -> str | helm.Chart:
    """A local chart is loaded here (so a missing path is a clear error); oci:// is passed on."""
    if chart.startswith("oci://"):
        return chart
    if not os.path.exists(chart):
        raise UsageError(f"chart {chart}: no such file or directory")
    return helm.Chart.load(chart)


def report(action: str, release: dict[str, Any]) -> None:
    """One line like helm's (release, namespace, revision, status), then the chart's NOTES."""
    print(
        f"{action} release {release.get('name', '?')} in namespace "
        f"{release.get('namespace', '?')}: revision {release.get('revision', '?')}, "
        f"{release.get('status', '?')}"
    )
    notes = release.get("notes")
    if notes:
        print(notes.rstrip())


def cmd_lint(args: argparse.Namespace) -> int:
    report_ = helm.lint(
        args.chart,
        user_values(args.values, args.set) or None,
        strict=args.strict or None,
        kube_version=args.kube_version,
    )
    names = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
    failed = False
    for message in report_.get("messages") or []:
        severity = message.get("severity", 0)
        failed |= severity >= 3 or (args.strict and severity >= 2)
        print(f"[{names.get(severity, severity)}] {message.get('path', '')}: {message.get('error', '')}")
    for error in report_.get("errors") or []:
        failed = True
        print(f"[ERROR] {error}")
    charts = report_.get("total_charts_linted", 0)
    print(f"{charts} chart(s) linted, {'failed' if failed else 'no failures'}")
    return 1 if failed or charts == 0 else 0


def cmd_template(args: argparse.Namespace) -> int:
    sys.stdout.write(
        template_text(
            args.chart,
            user_values(args.values, args.set),
            name=args.name,
            namespace=args.namespace,
            include_crds=args.include_crds,
            kube_version=args.kube_version,
            api_versions=args.api_versions,
        )
    )
    return 0


def release_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "namespace": args.namespace,
        "timeout": seconds(args.timeout),
        "wait": "watcher" if args.wait else None,
    }


def cmd_install(args: argparse.Namespace) -> int:
    values = user_values(args.values, args.set)
    chart = chart_ref(args.chart)
    with config(args.namespace) as cfg:
        release = cfg.install(
            chart, args.release, values,
            create_namespace=args.create_namespace,
            plain_http=args.plain_http,
            **release_options(args),
        )
    report("installed", release)
    return 0


def cmd_upgrade(args: argparse.Namespace) -> int:
    values = user_values(args.values, args.set)
    chart = chart_ref(args.chart)
    with config(args.namespace) as cfg:
        release = cfg.upgrade(
            chart, args.release, values,
            reset_values=args.reset_values,
            reuse_values=args.reuse_values,
            plain_http=args.plain_http,
            **release_options(args),
        )
    report("upgraded", release)
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    with config(args.namespace) as cfg:
        result = cfg.uninstall(
            args.release,
            wait="watcher" if args.wait else None,
            timeout=seconds(args.timeout),
            ignore_not_found=args.ignore_not_found,
        )
    print(f"uninstalled release {args.release} from namespace {args.namespace}")
    info = result.get("info") if isinstance(result, dict) else None
    if info:
        print(info)
    return 0


def cmd_package(args: argparse.Namespace) -> int:
    os.makedirs(args.dest, exist_ok=True)
    print(helm.package(args.chart, destination=args.dest))
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    if not args.remote.startswith("oci://"):
        raise UsageError(f"{args.remote}: expected oci://HOST/REPOSITORY")
    if not os.path.isfile(args.archive):
        raise UsageError(f"{args.archive}: no such chart archive")
    with helm.Chart.load(args.archive) as chart:
        name, version = chart.name, chart.version
    with helm.RegistryClient(plain_http=args.plain_http) as client:
        client.push(args.archive, args.remote, plain_http=args.plain_http)
        ref = f"{args.remote.rstrip('/')}/{name}:{version}"
        digest = client.resolve(ref)["digest"]
    # What `helm install` takes: the reference, and the digest that pins it.
    print(f"{ref}@{digest}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="helm.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def values_args(s: argparse.ArgumentParser) -> None:
        s.add_argument("-f", "--values", action="append", default=[], metavar="FILE")
        s.add_argument("--set", action="append", default=[], metavar="K=V")

    def release_args(s: argparse.ArgumentParser) -> None:
        s.add_argument("release")
        s.add_argument("chart")
        s.add_argument("-n", "--namespace", required=True)
        values_args(s)
        s.add_argument("--wait", action="store_true", help="wait until every object is ready")
        s.add_argument("--timeout", default="300s")
        s.add_argument("--plain-http", action="store_true", help="oci:// chart over plain HTTP")

    s = sub.add_parser("lint", help="helm lint")
    s.add_argument("chart")
    values_args(s)
    s.add_argument("--strict", action="store_true", help="warnings fail too")
    s.add_argument("--kube-version")
    s.set_defaults(func=cmd_lint)

    s = sub.add_parser("template", help="render offline (CRDs only with --include-crds)")
    s.add_argument("chart")
    s.add_argument("-n", "--namespace", required=True)
    s.add_argument("--name", required=True, help="the release name")
    values_args(s)
    s.add_argument("--include-crds", action="store_true")
    s.add_argument("--kube-version", help="the .Capabilities.KubeVersion to render for")
    s.add_argument("--api-versions", action="append", default=[], metavar="GROUP/VERSION[/KIND]")
    s.set_defaults(func=cmd_template)

    s = sub.add_parser("install", help="helm install")
    release_args(s)
    s.add_argument("--create-namespace", action="store_true")
    s.set_defaults(func=cmd_install)

    s = sub.add_parser("upgrade", help="helm upgrade")
    release_args(s)
    s.add_argument("--reset-values", action="store_true")
    s.add_argument("--reuse-values", action="store_true")
    s.set_defaults(func=cmd_upgrade)

    s = sub.add_parser("uninstall", help="helm uninstall")
    s.add_argument("release")
    s.add_argument("-n", "--namespace", required=True)
    s.add_argument("--wait", action="store_true")
    s.add_argument("--timeout", default="300s")
    s.add_argument("--ignore-not-found", action="store_true")
    s.set_defaults(func=cmd_uninstall)

    s = sub.add_parser("package", help="helm package")
    s.add_argument("chart")
    s.add_argument("dest", metavar="DEST_DIR")
    s.set_defaults(func=cmd_package)

    s = sub.add_parser("push", help="helm push of a packaged chart to an OCI registry")
    s.add_argument("archive", metavar="CHART_TGZ")
    s.add_argument("remote", metavar="oci://HOST/REPO")
    s.add_argument("--plain-http", action="store_true")
    s.set_defaults(func=cmd_push)
    return p


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except helm.HelmError as e:
        sys.stderr.write(f"helm.py {args.command}: {one_line(e)}\n")
    except UsageError as e:
        sys.stderr.write(f"helm.py {args.command}: {one_line(e)}\n")
    except KeyboardInterrupt:
        sys.stderr.write(f"helm.py {args.command}: interrupted\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
