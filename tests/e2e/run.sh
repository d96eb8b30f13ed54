#!/usr/bin/env bash
# The end-to-end tests against the real local cluster: brings the cluster up unless it already
# runs, and tears down what it started even when a test fails. Two phases on the one cluster:
#  1. host processes: installs the CRDs, runs operator, webhook and observer next to the
#     cluster from the dev build, runs `cargo test -p zastava-e2e` (every test binary but the
#     in-cluster one);
#  2. in cluster: stops those processes, builds the images from the same binaries
#     (images/make.sh, dev profile), pushes, signs and attaches their SBOMs, and runs the
#     in-cluster test binary, which installs charts/zastava with Helm.
# Arguments go to `cargo test` of phase 1 only (e.g. `--test observer`); `--test incluster`
# runs phase 2 only.
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

phases=(host incluster)
if [[ " $* " == *" --test incluster "* ]]; then
  phases=(incluster)
elif (($# > 0)); then
  phases=(host)
fi

cleanup() {
  local rc=$?
  # A failed in-cluster test may leave the release; its webhook configuration goes with it.
  if [[ -n ${ZASTAVA_HELM_PYTHON:-} ]]; then
    "$ZASTAVA_HELM_PYTHON" tests/e2e/helm.py uninstall zastava -n zastava-e2e-chart --wait >/dev/null 2>&1 || true
  fi
  zastava_stop_observer || true
  zastava_stop_webhook || true
  zastava_stop_operator || true
  # With the webhook gone, its configuration would refuse every governed pod: remove it (and
  # whatever policies a failed test left) so the cluster stays usable.
  zastava_remove_webhook_configuration || true
  if ((rc != 0)); then
    log "e2e failed (exit $rc); last lines of the operator log:"
    tail -n 60 "$ZASTAVA_OPERATOR_LOG" >&2 || true
    log "last lines of the webhook log:"
    tail -n 60 "$ZASTAVA_WEBHOOK_LOG" >&2 || true
    log "last lines of the observer log:"
    tail -n 60 "$ZASTAVA_OBSERVER_LOG" >&2 || true
  fi
  if ((cluster_was_up == 0)); then
    bash tests/e2e/cluster/down.sh || true
  else
    log "leaving the cluster up: it was up before the tests"
  fi
  exit "$rc"
}
trap cleanup EXIT

zastava_build
zastava_install_crds
# The tests decide what governs their namespaces; a policy left by `make demo` (its baseline
# governs every namespace) would deny their pods.
foreign=$(kubectl get zastavapolicies -o name | grep -v '/e2e-' || true)
[[ -z $foreign ]] || die "ZastavaPolicies not made by the tests are installed (from make demo?): $(echo $foreign); run make demo-down or delete them"
zastava_start_operator
zastava_start_webhook
zastava_start_observer

export ZASTAVA_OPERATOR_URL=http://$ZASTAVA_OPERATOR_ADDR
export ZASTAVA_OPERATOR_PID ZASTAVA_NAMESPACE
export ZASTAVA_WEBHOOK_METRICS_URL=http://$ZASTAVA_WEBHOOK_HTTP_ADDR/metrics
export ZASTAVA_WEBHOOK_PID ZASTAVA_WEBHOOK_LOG ZASTAVA_WEBHOOK_URL
export ZASTAVA_OBSERVER_URL=http://$ZASTAVA_OBSERVER_ADDR
export ZASTAVA_OBSERVER_LOG
export ZASTAVA_OPERATOR_BIN=$PWD/target/debug/zastava-operator
export ZASTAVA_WEBHOOK_BIN=$PWD/target/debug/zastava-webhook
rc=0
if [[ " ${phases[*]} " == *" host "* ]]; then
  # Test binaries run one after another; the tests inside one share the cluster in parallel,
  # each in namespaces and objects of its own.
  cargo test -p zastava-e2e --locked --no-fail-fast "$@" -- --test-threads=4 || rc=$?
fi

if [[ " ${phases[*]} " == *" incluster "* ]]; then
  log "in-cluster phase: stopping the host processes, building and pushing the images"
  zastava_stop_observer
  zastava_stop_webhook
  zastava_stop_operator
  zastava_remove_webhook_configuration
  # The chart installs the CRDs itself, as on a fresh cluster (Helm applies them server-side,
  # which conflicts with the client-side apply of phase 1); phase 1's objects go with them.
  kubectl delete customresourcedefinition zastavapolicies.zastava.stellaops.io \
    runtimepostures.zastava.stellaops.io --ignore-not-found --wait=true
  IMAGE_PROFILE=dev IMAGE_SKIP_CARGO=1 bash images/make.sh
  export ZASTAVA_IMAGES_ENV=$PWD/target/images/dev/images.env
  export ZASTAVA_IMAGES_PUBKEY=$PWD/target/images/dev/cosign.pub
  cargo test -p zastava-e2e --locked --test incluster -- --nocapture || rc=$?
fi
exit "$rc"
