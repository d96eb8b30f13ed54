# The entry points people type. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
CARGO ?= cargo
E2E := tests/e2e

.PHONY: help demo demo-down test lint unit e2e crds build cluster-up cluster-down bench-webhook bench-observer

help:
	@echo "make demo          install what is missing, bring up the local cluster, run Zastava, apply config/samples"
	@echo "make demo-down     stop Zastava and the local cluster"
	@echo "make test          fmt check, clippy, unit tests, e2e tests against the real local cluster"
	@echo "make crds          regenerate crds/*.yaml from the Rust types"
	@echo "make cluster-up    start the local cluster (etcd, apiserver, kubelet, containerd, registry)"
	@echo "make cluster-down  stop it and remove its state"
	@echo "make bench-webhook admission throughput/latency vs a bare axum+rustls ceiling, cold path vs the local registry"
	@echo "make bench-observer sampling and hashing of 64/256 mapped libraries vs openssl dgst, warm cache, RSS"

demo:
	bash $(E2E)/demo.sh

demo-down:
	bash $(E2E)/demo.sh down

test: lint unit e2e

lint: rust-toolchain
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit: rust-toolchain
	$(CARGO) test --workspace --exclude zastava-e2e --locked

e2e:
	bash $(E2E)/run.sh

crds:
	$(CARGO) run --quiet --locked -p zastava-crds --bin crdgen -- crds

build:
	$(CARGO) build --workspace --bins --locked

cluster-up:
	bash $(E2E)/cluster/up.sh

cluster-down:
	bash $(E2E)/cluster/down.sh

bench-webhook:
	bash $(E2E)/bench-webhook.sh

bench-observer:
	bash $(E2E)/bench-observer.sh

# rustfmt and clippy ship with the toolchain but are separate rustup components.
.PHONY: rust-toolchain
rust-toolchain:
	@command -v rustup >/dev/null && rustup component add rustfmt clippy >/dev/null 2>&1 || true
