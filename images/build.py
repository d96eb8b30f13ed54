#!/usr/bin/env python3
"""Builds Zastava's OCI images without a container engine, the way distroless images are made.

Each component (operator, webhook, observer) gets an image of two layers:

1. the base, shared by all three (so a node pulls it once): the files of Debian's libc6,
   libgcc-s1 and ca-certificates packages (documentation, programs and gconv modules left out),
   the CA bundle made from the package's certificates, a passwd/group with the non-root user
   65532, and the packages' control files under /var/lib/dpkg/status.d/ for scanners. No
   shell, no package manager.
2. the component's binary at /usr/local/bin/zastava-<component>, debug sections stripped.

Reproducible: entries sorted, owners numeric, every mtime SOURCE_DATE_EPOCH (the commit's
time), gzip without a name or time. The same commit, binaries and packages give the same
digests. Next to each image goes a CycloneDX 1.5 SBOM of its real contents: every file with
its sha256 (under the package that brought it), the Debian packages by purl, and the Rust
crates compiled into the binary.

Output (DIR/<component>/): layout/ (an OCI image layout, tag = version), sbom.cdx.json,
digest. `images/publish.sh` pushes, signs and attaches the SBOMs.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

COMPONENTS = ("operator", "webhook", "observer")
BASE_PACKAGES = ("libc6", "libgcc-s1", "ca-certificates")
NONROOT = 65532
# Package paths that are not needed to run a Rust binary: documentation (the copyright files
# stay, for the licences), manuals, locales, lintian overrides, the gconv modules (iconv; Rust
# never calls it), programs and scripts (ldd is a shell script; no shell is shipped).
DROP_PREFIXES = (
    "usr/share/doc/",
    "usr/share/man/",
    "usr/share/info/",
    "usr/share/locale/",
    "usr/share/lintian/",
    "usr/share/ca-certificates/",  # folded into the bundle below
    "usr/lib/x86_64-linux-gnu/gconv/",
    "usr/bin/",
    "usr/sbin/",
    "sbin/",
    "bin/",
    "usr/libexec/",
    "etc/ca-certificates",
    "etc/ssl/certs/",
)
KEEP = ("usr/share/doc/{pkg}/copyright",)
CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"
LABEL_PREFIX = "org.opencontainers.image."


def fail(message: str) -> None:
    print(f"images/build.py: {message}", file=sys.stderr)
    sys.exit(1)


def run(*argv: str, cwd: Path | None = None) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"{' '.join(argv)} failed:\n{done.stderr.strip()}")
    return done.stdout


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Entry:
    """One tar member: a directory, a regular file (data) or a symlink (target)."""

    path: str  # relative, no leading slash
    kind: str  # "dir" | "file" | "symlink"
    mode: int = 0o755
    data: bytes = b""
    target: str = ""
    uid: int = 0
    gid: int = 0


@dataclass
class Package:
    name: str
    version: str
    arch: str
    control: str
    files: list[str] = field(default_factory=list)  # absolute paths of its regular files


class Tree:
    """The files of one layer; parents are added as directories."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def add(self, entry: Entry) -> None:
        parts = entry.path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            self.entries.setdefault(parent, Entry(parent, "dir"))
        self.entries[entry.path] = entry

    def tar_gz(self, epoch: int) -> tuple[bytes, str]:
        """The layer as gzip'd tar and the sha256 of the uncompressed tar (its diff id)."""
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(self.entries):
                e = self.entries[path]
                info = tarfile.TarInfo(path)
                info.mtime = epoch
                info.uid, info.gid, info.uname, info.gname = e.uid, e.gid, "", ""
                info.mode = e.mode
                if e.kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif e.kind == "symlink":
                    info.type = tarfile.SYMTYPE
                    info.linkname = e.target
                    tar.addfile(info)
                else:
                    info.size = len(e.data)
                    tar.addfile(info, io.BytesIO(e.data))
        uncompressed = raw.getvalue()
        packed = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=9) as gz:
            gz.write(uncompressed)
        return packed.getvalue(), sha256(uncompressed)


def fetch_debs(cache: Path) -> list[Path]:
    """The base packages' .debs at the versions apt offers, cached by file name."""
    cache.mkdir(parents=True, exist_ok=True)
    debs = []
    for name in BASE_PACKAGES:
        version = ""
        for line in run("apt-cache", "policy", name).splitlines():
            if line.strip().startswith("Candidate:"):
                version = line.split(":", 1)[1].strip()
        if not version or version == "(none)":
            run("apt-get", "update", "-q")
            return fetch_debs(cache)
        have = sorted(cache.glob(f"{name}_*.deb"))
        want = [d for d in have if dpkg_field(d, "Version") == version]
        if not want:
            run("apt-get", "-o", "APT::Sandbox::User=root", "download", f"{name}={version}", cwd=cache)
            want = [d for d in sorted(cache.glob(f"{name}_*.deb")) if dpkg_field(d, "Version") == version]
        if not want:
            fail(f"apt-get download {name}={version} left no .deb in {cache}")
        debs.append(want[0])
    return debs


def dpkg_field(deb: Path, name: str) -> str:
    return run("dpkg-deb", "-f", str(deb), name).strip()


def base_layer(debs: list[Path]) -> tuple[Tree, list[Package]]:
    tree = Tree()
    packages = []
    certs: list[tuple[str, bytes]] = []
    for deb in debs:
        pkg = Package(
            name=dpkg_field(deb, "Package"),
            version=dpkg_field(deb, "Version"),
            arch=dpkg_field(deb, "Architecture"),
            control=run("dpkg-deb", "-f", str(deb)),
        )
        keep = {k.format(pkg=pkg.name) for k in KEEP}
        data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                path = os.path.normpath(member.name).lstrip("/")
                if path in ("", "."):
                    continue
                if path.startswith("usr/share/ca-certificates/") and member.isfile():
                    certs.append((path, tar.extractfile(member).read()))
                    continue
                if path not in keep and any((path + "/").startswith(p) or path.startswith(p) for p in DROP_PREFIXES):
                    continue
                if member.isdir():
                    tree.add(Entry(path, "dir", mode=member.mode & 0o7777))
                elif member.issym():
                    tree.add(Entry(path, "symlink", mode=0o777, target=member.linkname))
                elif member.isfile():
                    tree.add(Entry(path, "file", mode=member.mode & 0o7777, data=tar.extractfile(member).read()))
                    pkg.files.append("/" + path)
                elif member.islnk():
                    target = os.path.normpath(member.linkname).lstrip("/")
                    source = tree.entries.get(target)
                    if source is None or source.kind != "file":
                        fail(f"{deb.name}: hard link {path} to {target}, which is not a kept file")
                    tree.add(Entry(path, "file", mode=member.mode & 0o7777, data=source.data))
                    pkg.files.append("/" + path)
        packages.append(pkg)
        tree.add(Entry(f"var/lib/dpkg/status.d/{pkg.name}", "file", mode=0o644, data=pkg.control.encode()))
    if not certs:
        fail("ca-certificates brought no certificates")
    bundle = b"".join(data if data.endswith(b"\n") else data + b"\n" for _, data in sorted(certs))
    tree.add(Entry(CA_BUNDLE, "file", mode=0o644, data=bundle))
    ca = next(p for p in packages if p.name == "ca-certificates")
    ca.files.append("/" + CA_BUNDLE)
    tree.add(Entry("etc/passwd", "file", mode=0o644, data=(
        "root:x:0:0:root:/root:/sbin/nologin\n"
        f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n").encode()))
    tree.add(Entry("etc/group", "file", mode=0o644, data=f"root:x:0:\nnonroot:x:{NONROOT}:\n".encode()))
    tree.add(Entry("etc/nsswitch.conf", "file", mode=0o644, data=b"passwd: files\ngroup: files\nhosts: files dns\n"))
    tree.add(Entry("root", "dir", mode=0o700))
    tree.add(Entry("home/nonroot", "dir", mode=0o700, uid=NONROOT, gid=NONROOT))
    tree.add(Entry("tmp", "dir", mode=0o1777))
    return tree, packages


def strip(binary: Path, work: Path) -> bytes:
    out = work / binary.name
    run("objcopy", "--strip-debug", str(binary), str(out))
    return out.read_bytes()


def crates(workspace: Path, component: str) -> list[tuple[str, str]]:
    """The crates linked into the component's binary (normal edges, proc-macros excluded)."""
    out = run("cargo", "tree", "--locked", "--offline", "-p", f"zastava-{component}", "-e", "normal,no-proc-macro",
              "--target", "x86_64-unknown-linux-gnu", "--prefix", "none", "--format", "{p}", cwd=workspace)
    found = set()
    for line in out.splitlines():
        words = line.replace("(*)", "").split()
        if len(words) >= 2 and words[1].startswith("v"):
            found.add((words[0], words[1][1:]))
    if not found:
        fail(f"cargo tree listed no crates for zastava-{component}")
    return sorted(found)


def blob(layout: Path, data: bytes) -> dict:
    digest = sha256(data)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def iso(epoch: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build(args: argparse.Namespace) -> None:
    workspace = Path(args.workspace).resolve()
    out = Path(args.out).resolve()
    epoch = args.epoch
    debs = fetch_debs(Path(args.debs))
    base, packages = base_layer(debs)
    base_gz, base_diff = base.tar_gz(epoch)
    created = iso(epoch)
    labels = {
        f"{LABEL_PREFIX}source": args.source,
        f"{LABEL_PREFIX}revision": args.revision,
        f"{LABEL_PREFIX}version": args.version,
        f"{LABEL_PREFIX}licenses": "Apache-2.0",
        f"{LABEL_PREFIX}created": created,
        f"{LABEL_PREFIX}vendor": "StellaOps",
    }
    with tempfile.TemporaryDirectory() as tmp:
        for component in COMPONENTS:
            binary = Path(args.bin_dir) / f"zastava-{component}"
            if not binary.is_file():
                fail(f"{binary} does not exist (build the binaries first)")
            name = f"zastava-{component}"
            app = Tree()
            app_data = strip(binary, Path(tmp))
            app.add(Entry(f"usr/local/bin/{name}", "file", mode=0o755, data=app_data))
            app_gz, app_diff = app.tar_gz(epoch)

            dest = out / component
            shutil.rmtree(dest, ignore_errors=True)
            layout = dest / "layout"
            (layout / "blobs" / "sha256").mkdir(parents=True)
            image_labels = dict(labels, **{
                f"{LABEL_PREFIX}title": name,
                f"{LABEL_PREFIX}description": f"Zastava {component}",
            })
            config = {
                "created": created,
                "architecture": "amd64",
                "os": "linux",
                "config": {
                    "User": f"{NONROOT}:{NONROOT}",
                    "Entrypoint": [f"/usr/local/bin/{name}"],
                    "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", f"SSL_CERT_FILE=/{CA_BUNDLE}"],
                    "WorkingDir": "/",
                    "Labels": image_labels,
                },
                "rootfs": {"type": "layers", "diff_ids": [f"sha256:{base_diff}", f"sha256:{app_diff}"]},
                "history": [
                    {"created": created, "created_by": "images/build.py: " + ", ".join(
                        f"{p.name} {p.version}" for p in packages)},
                    {"created": created, "created_by": f"images/build.py: {name} ({args.profile} profile)"},
                ],
            }
            manifest = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(layout, canonical(config))},
                "layers": [
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **blob(layout, base_gz)},
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **blob(layout, app_gz)},
                ],
                "annotations": image_labels,
            }
            manifest_bytes = canonical(manifest)
            m = blob(layout, manifest_bytes)
            index = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [{
                    "mediaType": "application/vnd.oci.image.manifest.v1+json", **m,
                    "annotations": {f"{LABEL_PREFIX}ref.name": args.version},
                }],
            }
            (layout / "index.json").write_bytes(canonical(index))
            (layout / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')
            (dest / "digest").write_text(m["digest"] + "\n")
            sbom = cyclonedx(component, args, m["digest"], created, packages, base, app, workspace)
            (dest / "sbom.cdx.json").write_text(json.dumps(sbom, indent=1, sort_keys=True) + "\n")
            print(f"{component} {m['digest']} compressed {(len(base_gz) + len(app_gz)) / 1e6:.1f} MB "
                  f"(base {len(base_gz) / 1e6:.1f} MB, binary {len(app_gz) / 1e6:.1f} MB)")


def file_component(path: str, data: bytes) -> dict:
    return {"type": "file", "name": path, "hashes": [{"alg": "SHA-256", "content": sha256(data)}]}


def cyclonedx(component, args, digest, created, packages, base: Tree, app: Tree, workspace: Path) -> dict:
    name = f"zastava-{component}"
    by_path = {"/" + e.path: e for e in list(base.entries.values()) + list(app.entries.values()) if e.kind == "file"}
    listed = set()
    components = []
    for p in packages:
        files = []
        for path in sorted(p.files):
            files.append(file_component(path, by_path[path].data))
            listed.add(path)
        components.append({
            "type": "library" if p.name != "ca-certificates" else "data",
            "bom-ref": f"pkg:deb/debian/{p.name}@{p.version}?arch={p.arch}",
            "name": p.name,
            "version": p.version,
            "purl": f"pkg:deb/debian/{p.name}@{p.version}?arch={p.arch}&distro=debian-12",
            "components": files,
        })
    binary_path = f"/usr/local/bin/{name}"
    listed.add(binary_path)
    components.append({
        "type": "application",
        "bom-ref": f"pkg:cargo/{name}@{args.version}",
        "name": name,
        "version": args.version,
        "purl": f"pkg:cargo/{name}@{args.version}",
        "hashes": [{"alg": "SHA-256", "content": sha256(by_path[binary_path].data)}],
        "properties": [{"name": "zastava:location:path", "value": binary_path}],
        "evidence": {"occurrences": [{"location": binary_path}]},
        "components": [
            {"type": "library", "bom-ref": f"pkg:cargo/{c}@{v}", "name": c, "version": v, "purl": f"pkg:cargo/{c}@{v}"}
            for c, v in crates(workspace, component) if c != name
        ],
    })
    # Files no package brought: passwd, group, nsswitch.conf, the dpkg status files.
    for path in sorted(set(by_path) - listed):
        components.append(file_component(path, by_path[path].data))
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, name + '@' + digest)}",
        "version": 1,
        "metadata": {
            "timestamp": created,
            "tools": [{"name": "images/build.py"}],
            "component": {
                "type": "container",
                "bom-ref": f"{name}@{digest}",
                "name": name,
                "version": args.version,
                "hashes": [{"alg": "SHA-256", "content": digest.removeprefix("sha256:")}],
            },
        },
        "components": components,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", required=True, help="where zastava-{operator,webhook,observer} are")
    parser.add_argument("--profile", required=True, help="the cargo profile they were built with (recorded)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--debs", required=True, help="cache directory of the base packages' .debs")
    parser.add_argument("--version", required=True)
    parser.add_argument("--revision", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--epoch", type=int, required=True, help="SOURCE_DATE_EPOCH: every mtime and date")
    parser.add_argument("--workspace", default=".")
    build(parser.parse_args())


if __name__ == "__main__":
    main()
