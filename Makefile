# The entry points people type. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
CARGO ?= cargo
E2E := tests/e2e

.PHONY: help demo demo-down test lint unit e2e crds build images cluster-up cluster-down bench-webhook bench-admission bench-observer bench-verifier fuzz fuzz-smoke

help:
	@echo "make demo          install what is missing, bring up the local cluster, run Zastava, apply config/samples"
	@echo "make demo-down     stop Zastava and the local cluster"
	@echo "make test          fmt check, clippy, unit tests, e2e tests against the real local cluster"
	@echo "make crds          regenerate crds/*.yaml and charts/zastava/crds/ from the Rust types"
	@echo "make manifests     regenerate config/default (and the Argo CD health snippet) from charts/zastava"
	@echo "make chart-lint    helm lint charts/zastava (Helm's Go SDK through tests/e2e/helm.py)"
	@echo "make chart-test    lint and render tests of the chart; config/default must equal a fresh render"
	@echo "make image-test    the image build twice from stand-in binaries: reproducible, distroless, SBOM complete"
	@echo "make images        OCI images of the three binaries (release profile), pushed to the local registry by digest, signed, SBOMs attached"
	@echo "make cluster-up    start the local cluster (etcd, apiserver, kubelet, kube-proxy, containerd, registry)"
	@echo "make cluster-down  stop it and remove its state"
	@echo "make bench-webhook admission throughput/latency vs a bare axum+rustls ceiling, cold path vs the local registry"
	@echo "make bench-admission the installed chart under 10/100/500 concurrent creators through the apiserver (back to back, and 100 paced at 100/200/400 creates/s), with and without Zastava: latency, the apiserver's webhook duration, handshakes, admissions/s and CPU per replica"
	@echo "make bench-observer sampling and hashing of 64/256 mapped libraries vs openssl dgst, warm cache, RSS; outbox events/min and a backend outage; the daemon at 50 and 110 pods"
	@echo "make bench-verifier 500 running workloads over 50 digests verified again: the first pass and after a policy change, registry requests per digest, webhook CPU and memory"
	@echo "make fuzz          each fuzz target for FUZZ_SECONDS (default 300) from the committed corpus; FUZZ_MERGE=1 keeps new coverage"
	@echo "make fuzz-smoke    the committed corpora replayed and each target fuzzed 10 s (part of make test)"

demo:
	bash $(E2E)/demo.sh

demo-down:
	bash $(E2E)/demo.sh down

test: lint unit fuzz-smoke chart-test image-test e2e

lint: rust-toolchain
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	# --all-targets leaves out targets marked `test = false`: the in-cluster test.
	$(CARGO) clippy --locked -p zastava-e2e --test incluster -- -D warnings

unit: rust-toolchain
	$(CARGO) test --workspace --exclude zastava-e2e --locked

e2e:
	bash $(E2E)/run.sh

FUZZ_SECONDS ?= 300
fuzz:
	bash fuzz/fuzz.sh $(FUZZ_SECONDS)

fuzz-smoke:
	bash fuzz/fuzz.sh 10

crds:
	$(CARGO) run --quiet --locked -p zastava-crds --bin crdgen -- crds charts/zastava/crds

# Helm is helm-python-sdk (Helm v4's Go SDK; no helm binary in the reachable registries) in the
# virtualenv tests/e2e/cluster/install.sh makes; with no interpreter that imports it, install.sh
# runs first (it also installs what the e2e tests need). Expanded when a recipe runs.
HELM_PY_DIR := $(shell . $(E2E)/cluster/lib.sh && echo "$$HELM_PY_DIR")
HELM_PYTHON ?= $(if $(ZASTAVA_HELM_PYTHON),$(ZASTAVA_HELM_PYTHON),$(if $(wildcard $(HELM_PY_DIR)/bin/python),$(HELM_PY_DIR)/bin/python,python3))

.PHONY: helm-sdk manifests chart-lint chart-test
helm-sdk:
	@$(HELM_PYTHON) -c 'import helm_python' 2>/dev/null || bash $(E2E)/cluster/install.sh

manifests: helm-sdk
	PYTHONDONTWRITEBYTECODE=1 $(HELM_PYTHON) tests/chart/manifests.py

chart-lint: helm-sdk
	PYTHONDONTWRITEBYTECODE=1 $(HELM_PYTHON) $(E2E)/helm.py lint --strict charts/zastava

chart-test: chart-lint
	PYTHONDONTWRITEBYTECODE=1 $(HELM_PYTHON) -m unittest discover -s tests/chart

# images/build.py twice from stand-in binaries: same digests, distroless contents, the SBOM.
# It reads Debian's packages with apt and dpkg-deb and strips with objcopy (install.sh).
.PHONY: image-test
image-test:
	@command -v objcopy >/dev/null || bash $(E2E)/cluster/install.sh
	PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s tests/images

build:
	$(CARGO) build --workspace --bins --locked

# IMAGE_PROFILE=dev builds them from the dev binaries (what the e2e tests do).
images:
	bash images/make.sh

cluster-up:
	bash $(E2E)/cluster/up.sh

cluster-down:
	bash $(E2E)/cluster/down.sh

bench-webhook:
	bash $(E2E)/bench-webhook.sh

bench-admission:
	bash $(E2E)/bench-admission.sh

bench-observer:
	bash $(E2E)/bench-observer.sh

bench-verifier:
	bash $(E2E)/bench-verifier.sh

# rustfmt and clippy ship with the toolchain but are separate rustup components.
.PHONY: rust-toolchain
rust-toolchain:
	@command -v rustup >/dev/null && rustup component add rustfmt clippy >/dev/null 2>&1 || true
