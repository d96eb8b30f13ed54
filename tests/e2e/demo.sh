#!/usr/bin/env bash
# `make demo`: on a fresh machine, installs what is missing, brings up the local cluster, and
# installs Zastava the way a user would: the images built (release profile), pushed to the
# local registry by digest, signed, SBOMs attached (`make images`), then `helm install` of
# charts/zastava; applies config/samples/ and shows what Zastava reports.
# Leaves everything running; `make demo-down` (demo.sh down) uninstalls it and stops the
# cluster.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=cluster/lib.sh
. tests/e2e/cluster/lib.sh

RELEASE=zastava
NAMESPACE=zastava-system
helm() { "$ZASTAVA_HELM_PYTHON" tests/e2e/helm.py "$@"; }

if [[ ${1:-} == down ]]; then
  if cluster_answers; then
    # shellcheck disable=SC1090
    . "$ENV_FILE"
    kubectl delete -f config/samples/ --ignore-not-found >/dev/null || true
    helm uninstall "$RELEASE" -n "$NAMESPACE" --wait || true
  fi
  exec bash tests/e2e/cluster/down.sh
fi

bash tests/e2e/cluster/up.sh
# shellcheck disable=SC1090
. "$ENV_FILE"

IMAGE_PROFILE=release bash images/make.sh
values=target/images/release/values.json
bash tests/e2e/chart-values.sh target/images/release/images.env >"$values"
if [[ -n $(kubectl -n "$NAMESPACE" get secret -l "owner=helm,name=$RELEASE" -o name 2>/dev/null) ]]; then
  log "helm upgrade $RELEASE charts/zastava"
  helm upgrade "$RELEASE" charts/zastava -n "$NAMESPACE" -f "$values" --wait --timeout 300s
else
  log "helm install $RELEASE charts/zastava"
  helm install "$RELEASE" charts/zastava -n "$NAMESPACE" --create-namespace -f "$values" --wait --timeout 300s
fi
kubectl -n "$NAMESPACE" get pods -o wide

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

Zastava is installed in the local cluster (helm release $RELEASE in $NAMESPACE).
  export KUBECONFIG=$KUBECONFIG      # then: kubectl get zp; kubectl get rp -A
  kubectl -n $NAMESPACE get pods
  kubectl -n $NAMESPACE logs deploy/zastava-webhook   (one "admission decision" line per review)
  kubectl -n $NAMESPACE port-forward deploy/zastava-operator 8080   # then curl localhost:8080/metrics
  stop everything:  make demo-down
EOF
