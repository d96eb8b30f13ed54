#!/usr/bin/env bash
# `make bench-verifier`: continuous verification under load (tests/e2e/benches/verifier.rs):
# 500 RuntimePostures over 50 digests verified by the webhook's verifier, then again after a
# policy change, with the registry's request count, the webhook's CPU and memory. Runs
# operator and webhook as host processes (the dev build, as the e2e tests do) next to the
# local cluster, which it brings up if needed and takes down again if it started it. Needs
# the cluster to itself: no other Zastava (make demo, the e2e tests) may run.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=cluster/lib.sh
. tests/e2e/cluster/lib.sh

cluster_was_up=0
cluster_answers && cluster_was_up=1
bash tests/e2e/cluster/up.sh
# shellcheck disable=SC1090
. "$ENV_FILE"
# shellcheck source=zastava.sh
. tests/e2e/zastava.sh

cleanup() {
  local rc=$?
  zastava_stop_webhook || true
  zastava_stop_operator || true
  zastava_remove_webhook_configuration || true
  if ((cluster_was_up == 0)); then
    bash tests/e2e/cluster/down.sh || true
  fi
  exit "$rc"
}
trap cleanup EXIT

zastava_build
zastava_install_crds
zastava_start_operator
zastava_start_webhook
export ZASTAVA_WEBHOOK_PID ZASTAVA_WEBHOOK_METRICS_URL=http://$ZASTAVA_WEBHOOK_HTTP_ADDR/metrics
export ZASTAVA_WEBHOOK_BIN=$PWD/target/debug/zastava-webhook
log "benchmarking the verifier (dev build)"
# The dev profile for the load generator too: what is measured is the webhook process, and the
# release profile would compile every dependency again for a client.
cargo bench --locked --profile dev -p zastava-e2e --bench verifier
