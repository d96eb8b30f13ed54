#!/usr/bin/env bash
# `make bench-observer`: sampling and hashing of a process mapping 64 and 256 libraries (cold
# and warm hash cache) against `openssl dgst -sha256` over the same files, and the steady RSS
# of the sampling path with 50 processes (observer/benches/sampling.rs). Needs no cluster.
# Installs Debian's `openssl` when it is missing (the ceiling the benchmark compares with).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=cluster/lib.sh
. tests/e2e/cluster/lib.sh

if ! command -v openssl >/dev/null 2>&1; then
  [[ $(id -u) -eq 0 ]] || die "openssl is missing; install Debian's openssl package (needs root)"
  log "installing Debian packages: openssl"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends openssl
fi
command -v python3 >/dev/null 2>&1 || die "python3 is needed (the helper process that maps the libraries)"

cargo bench --locked -p zastava-observer --bench sampling
