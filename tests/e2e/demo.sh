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
    zastava_stop_observer
    zastava_stop_webhook
    zastava_stop_operator
    zastava_remove_webhook_configuration
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
zastava_start_webhook
zastava_start_observer

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
# The baseline policy now guards every namespace: an unsigned image is refused at admission.
kubectl create namespace zastava-demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
echo
echo "\$ kubectl -n zastava-demo run unsigned --image=$ZASTAVA_TEST_IMAGE --dry-run=server"
for _ in 1 2 3 4 5 6 7 8 9 10; do
  if out=$(kubectl -n zastava-demo run unsigned --image="$ZASTAVA_TEST_IMAGE" --dry-run=server 2>&1); then
    sleep 1 # the webhook configuration is being put in place
  else
    break
  fi
done
echo "$out"
cat <<EOF

Zastava is running against the local cluster.
  export KUBECONFIG=$KUBECONFIG      # then: kubectl get zp; kubectl get rp -A
  operator metrics: curl http://$ZASTAVA_OPERATOR_ADDR/metrics
  operator log:     $ZASTAVA_OPERATOR_LOG
  webhook metrics:  curl http://$ZASTAVA_WEBHOOK_HTTP_ADDR/metrics
  webhook log:      $ZASTAVA_WEBHOOK_LOG   (one "admission decision" line per review)
  observer metrics: curl http://$ZASTAVA_OBSERVER_ADDR/metrics
  stop everything:  make demo-down
EOF
