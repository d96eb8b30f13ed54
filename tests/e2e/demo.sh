#!/usr/bin/env bash
# `make demo`: on a fresh machine, installs what is missing, brings up the local cluster, builds
# and runs Zastava against it, applies config/samples/ and shows what Zastava reports.
# Leaves everything running; `make demo-down` (demo.sh down) stops it.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=cluster/lib.sh
. tests/e2e/cluster/lib.sh

if [[ ${1:-} == down ]]; then
  if [[ -s $ENV_FILE ]]; then
    # shellcheck disable=SC1090
    . "$ENV_FILE"
    # shellcheck source=zastava.sh
    . tests/e2e/zastava.sh
    zastava_stop_operator
  fi
  exec bash tests/e2e/cluster/down.sh
fi

bash tests/e2e/cluster/up.sh
# shellcheck disable=SC1090
. "$ENV_FILE"
# shellcheck source=zastava.sh
. tests/e2e/zastava.sh

zastava_build
zastava_install_crds
zastava_start_operator

log "applying config/samples/"
kubectl apply -f config/samples/
kubectl wait --for condition=Ready --timeout=60s zastavapolicy/baseline
# The broken sample is meant to be rejected; wait until the operator has said so.
kubectl wait --for condition=Stalled --timeout=60s zastavapolicy/broken-key

echo
echo "\$ kubectl get zastavapolicies,runtimepostures -A"
kubectl get zastavapolicies,runtimepostures -A
echo
echo "\$ kubectl describe zastavapolicy broken-key | tail -n 8"
kubectl describe zastavapolicy broken-key | tail -n 8
cat <<EOF

Zastava is running against the local cluster.
  export KUBECONFIG=$KUBECONFIG      # then: kubectl get zp; kubectl get rp -A
  operator metrics: curl http://$ZASTAVA_OPERATOR_ADDR/metrics
  operator log:     $ZASTAVA_OPERATOR_LOG
  stop everything:  make demo-down
EOF
