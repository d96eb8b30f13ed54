"""images/build.py: reproducible, distroless-style images with an SBOM of their real contents.

Builds the three images twice from stand-in binaries (copies of the machine's `true`, in two
different directories) with the real Debian packages, and checks what `make images` promises:
the same digests both times, sorted entries with fixed times and owners, the non-root user,
no shell or package manager, the OCI labels, and an SBOM that lists every file with its sha256.
Run: python3 -m unittest discover -s tests/images
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("ZASTAVA_CACHE", Path.home() / ".cache" / "zastava-e2e"))
EPOCH = 1_700_000_000
COMPONENTS = ("operator", "webhook", "observer")


def build(out: Path, bins: Path) -> None:
    subprocess.run(
        ["python3", str(ROOT / "images/build.py"), "--bin-dir", str(bins), "--profile", "test",
         "--out", str(out), "--debs", str(CACHE / "debs/image-base"), "--version", "0.1.0",
         "--revision", "0123abc", "--source", "https://git.example.com/zastava", "--epoch",
         str(EPOCH), "--workspace", str(ROOT)],
        check=True, capture_output=True, text=True,
    )


def stand_in_binaries(directory: Path) -> Path:
    directory.mkdir(parents=True)
    for component in COMPONENTS:
        shutil.copy(shutil.which("true"), directory / f"zastava-{component}")
    return directory


class ImageBuild(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = Path(tempfile.mkdtemp(prefix="zastava-images-"))
        cls.first = cls.tmp / "first"
        cls.second = cls.tmp / "second"
        build(cls.first, stand_in_binaries(cls.tmp / "bin-a"))
        build(cls.second, stand_in_binaries(cls.tmp / "elsewhere/bin-b"))

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def blob(self, component: str, digest: str) -> bytes:
        return (self.first / component / "layout/blobs/sha256" / digest.removeprefix("sha256:")).read_bytes()

    def manifest(self, component: str) -> dict:
        return json.loads(self.blob(component, (self.first / component / "digest").read_text().strip()))

    def layers(self, component: str) -> list[tarfile.TarFile]:
        return [
            tarfile.open(fileobj=io.BytesIO(gzip.decompress(self.blob(component, layer["digest"]))))
            for layer in self.manifest(component)["layers"]
        ]

    def test_two_builds_give_the_same_digests(self) -> None:
        for component in COMPONENTS:
            a = (self.first / component / "digest").read_text()
            b = (self.second / component / "digest").read_text()
            self.assertEqual(a, b, component)
            self.assertEqual(
                (self.first / component / "sbom.cdx.json").read_bytes(),
                (self.second / component / "sbom.cdx.json").read_bytes(),
            )

    def test_the_base_layer_is_one_blob_for_all_three(self) -> None:
        bases = {self.manifest(c)["layers"][0]["digest"] for c in COMPONENTS}
        self.assertEqual(len(bases), 1)

    def test_entries_are_sorted_with_fixed_times_and_numeric_owners(self) -> None:
        for layer in self.layers("webhook"):
            names = layer.getnames()
            self.assertEqual(names, sorted(names))
            for member in layer.getmembers():
                self.assertEqual(member.mtime, EPOCH, member.name)
                self.assertEqual((member.uname, member.gname), ("", ""), member.name)
                self.assertIn(member.uid, (0, 65532), member.name)

    def test_config_runs_the_binary_as_the_non_root_user_with_labels(self) -> None:
        config = json.loads(self.blob("observer", self.manifest("observer")["config"]["digest"]))
        self.assertEqual(config["config"]["User"], "65532:65532")
        self.assertEqual(config["config"]["Entrypoint"], ["/usr/local/bin/zastava-observer"])
        labels = config["config"]["Labels"]
        for key in ("source", "revision", "version", "licenses", "created"):
            self.assertTrue(labels.get(f"org.opencontainers.image.{key}"), key)
        self.assertEqual(labels["org.opencontainers.image.revision"], "0123abc")
        self.assertEqual(len(config["rootfs"]["diff_ids"]), 2)

    def test_no_shell_no_package_manager_and_the_user_exists(self) -> None:
        files: dict[str, bytes] = {}
        for layer in self.layers("operator"):
            for member in layer.getmembers():
                if member.isfile():
                    files["/" + member.name] = layer.extractfile(member).read()
                else:
                    files.setdefault("/" + member.name, b"")
        for absent in ("/bin/sh", "/usr/bin/sh", "/bin/bash", "/usr/bin/dpkg", "/usr/bin/apt-get",
                       "/usr/bin/ldd", "/sbin/ldconfig"):
            self.assertNotIn(absent, files)
        self.assertIn(b"nonroot:x:65532:65532", files["/etc/passwd"])
        self.assertIn(b"BEGIN CERTIFICATE", files["/etc/ssl/certs/ca-certificates.crt"])
        self.assertIn("/lib/x86_64-linux-gnu/libc.so.6", files)
        self.assertIn("/usr/local/bin/zastava-operator", files)
        self.assertIn(b"Package: libc6", files["/var/lib/dpkg/status.d/libc6"])

    def test_the_sbom_lists_every_file_with_its_sha256(self) -> None:
        sbom = json.loads((self.first / "webhook" / "sbom.cdx.json").read_text())
        self.assertEqual(sbom["bomFormat"], "CycloneDX")
        listed: dict[str, str] = {}
        purls = []
        todo = list(sbom["components"])
        while todo:
            c = todo.pop()
            todo.extend(c.get("components", []))
            if c.get("purl"):
                purls.append(c["purl"])
            if c["type"] == "file":
                listed[c["name"]] = c["hashes"][0]["content"]
            for p in c.get("properties", []):
                if p["name"].endswith("path"):
                    listed[p["value"]] = c["hashes"][0]["content"]
        for layer in self.layers("webhook"):
            for member in layer.getmembers():
                if member.isfile():
                    data = layer.extractfile(member).read()
                    self.assertEqual(listed.get("/" + member.name), hashlib.sha256(data).hexdigest(), member.name)
        self.assertTrue(any(p.startswith("pkg:deb/debian/libc6@") for p in purls), purls[:5])
        self.assertTrue(any(p.startswith("pkg:cargo/rustls@") for p in purls))
        self.assertFalse(any(p.startswith("pkg:cargo/serde_derive@") for p in purls), "proc-macros are not linked")
        self.assertEqual(sbom["metadata"]["component"]["hashes"][0]["content"],
                         (self.first / "webhook/digest").read_text().strip().removeprefix("sha256:"))


if __name__ == "__main__":
    unittest.main()
