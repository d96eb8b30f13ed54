#!/usr/bin/env bash
# Smoke test of a running e2e cluster (start it with up.sh first):
#  - a Pod pulled from the local registry (imagePullPolicy: Always), Running, imageID by digest,
#    kubectl exec and kubectl logs work, the pod reaches the host through the bridge gateway;
#  - a Deployment rolls out (controller-manager + scheduler);
#  - cosign sign/verify and oras attach/discover against the local registry (on a copy of the
#    test image in its own repository, so the shared test image stays unsigned);
#  - deleting the namespace completes (namespace controller + garbage collector).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

[[ -s $ENV_FILE ]] || die "no $ENV_FILE: run up.sh first"
# shellcheck source=/dev/null
source "$ENV_FILE"

T0=$SECONDS
NS=zastava-smoke
WORK=$(mktemp -d)
HTTPD_PID=""
cleanup() {
  [[ -n $HTTPD_PID ]] && kill "$HTTPD_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

STEP=""
step() { STEP=$*; log "smoke: $*"; }
fail() {
  log "SMOKE FAILED at step '$STEP': $*"
  if kubectl get ns "$NS" >/dev/null 2>&1; then
    kubectl -n "$NS" get pods -o wide >&2 || true
    kubectl -n "$NS" get events --sort-by=.lastTimestamp 2>/dev/null | tail -n 20 >&2 || true
  fi
  exit 1
}
retry() { # timeout-seconds cmd...
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
}

step "kubectl talks to the apiserver; node $ZASTAVA_NODE Ready"
kubectl version --short >/dev/null 2>&1 || fail "kubectl version failed"
[[ $(kubectl get node "$ZASTAVA_NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]] ||
  fail "node $ZASTAVA_NODE is not Ready"

step "fresh namespace $NS"
if kubectl get ns "$NS" >/dev/null 2>&1; then
  kubectl delete ns "$NS" --wait=false >/dev/null
  kubectl wait --for=delete "ns/$NS" --timeout=120s >/dev/null 2>&1 || true
fi
kubectl create ns "$NS" >/dev/null || fail "cannot create namespace"
retry 60 kubectl -n "$NS" get serviceaccount default >/dev/null 2>&1 ||
  fail "the default ServiceAccount never appeared (controller-manager?)"

step "pod from $ZASTAVA_TEST_IMAGE (imagePullPolicy Always)"
cat >"$WORK/pod.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: smoke
  namespace: $NS
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: $ZASTAVA_TEST_IMAGE
    imagePullPolicy: Always
    command: ["/bin/sh", "-c", "trap 'exit 0' TERM; echo smoke-started; while true; do sleep 1; done"]
EOF
retry 30 kubectl apply -f "$WORK/pod.yaml" >/dev/null 2>&1 || kubectl apply -f "$WORK/pod.yaml" || fail "cannot create pod"
kubectl -n "$NS" wait --for=condition=Ready pod/smoke --timeout=120s >/dev/null || fail "pod never became Ready"
phase=$(kubectl -n "$NS" get pod smoke -o 'jsonpath={.status.phase}')
[[ $phase == Running ]] || fail "pod phase is $phase"
image_id=$(kubectl -n "$NS" get pod smoke -o 'jsonpath={.status.containerStatuses[0].imageID}')
[[ $image_id == *@sha256:* ]] || fail "imageID '$image_id' carries no @sha256: digest"
[[ $image_id == *"$ZASTAVA_TEST_IMAGE_DIGEST" ]] ||
  fail "imageID '$image_id' does not match the pushed digest $ZASTAVA_TEST_IMAGE_DIGEST"
log "smoke: pod Running, imageID $image_id"

step "kubectl exec and logs"
hn=$(kubectl -n "$NS" exec smoke -- cat /etc/hostname) || fail "kubectl exec failed"
[[ $hn == smoke ]] || fail "exec: /etc/hostname is '$hn', expected 'smoke'"
retry 10 sh -c "kubectl -n '$NS' logs smoke | grep -q smoke-started" || fail "kubectl logs lacks the marker"

step "pod reaches the host through the CNI bridge gateway"
gw=$(ip -4 -o addr show dev "$CNI_BRIDGE" | awk '{ split($4, a, "/"); print a[1]; exit }')
[[ -n $gw ]] || fail "bridge $CNI_BRIDGE has no IPv4 address"
mkdir -p "$WORK/www" && echo host-ok >"$WORK/www/ping.txt"
busybox httpd -f -p "$gw:18080" -h "$WORK/www" &
HTTPD_PID=$!
sleep 0.5
got=$(kubectl -n "$NS" exec smoke -- timeout 10 wget -q -O - "http://$gw:18080/ping.txt") || fail "pod cannot reach $gw:18080"
[[ $got == host-ok ]] || fail "pod got '$got' from the host"
kill "$HTTPD_PID" 2>/dev/null
HTTPD_PID=""

step "Deployment with 1 replica (controller-manager + scheduler)"
cat >"$WORK/deploy.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: smoke-deploy
  namespace: $NS
spec:
  replicas: 1
  selector:
    matchLabels: { app: smoke-deploy }
  template:
    metadata:
      labels: { app: smoke-deploy }
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: $ZASTAVA_TEST_IMAGE
        command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
EOF
kubectl apply -f "$WORK/deploy.yaml" >/dev/null || fail "cannot create the deployment"
kubectl -n "$NS" rollout status deployment/smoke-deploy --timeout=120s >/dev/null || fail "deployment never rolled out"
dpod=$(kubectl -n "$NS" get pods -l app=smoke-deploy -o 'jsonpath={.items[0].metadata.name}')
[[ $(kubectl -n "$NS" get pod "$dpod" -o 'jsonpath={.status.phase}') == Running ]] || fail "deployment pod $dpod not Running"
[[ $(kubectl -n "$NS" get pod "$dpod" -o 'jsonpath={.spec.nodeName}') == "$ZASTAVA_NODE" ]] || fail "deployment pod not scheduled to $ZASTAVA_NODE"
log "smoke: deployment pod $dpod Running on $ZASTAVA_NODE"

step "cosign sign/verify and oras attach/discover"
SIGNED=$ZASTAVA_REGISTRY/zastava/smoke-busybox
"$ORAS" cp --from-plain-http --to-plain-http "$ZASTAVA_TEST_IMAGE" "$SIGNED:smoke" >/dev/null 2>"$WORK/oras.err" ||
  { cat "$WORK/oras.err" >&2; fail "oras cp to $SIGNED failed"; }
REF=$SIGNED@$ZASTAVA_TEST_IMAGE_DIGEST
(
  cd "$WORK"
  export COSIGN_PASSWORD=""
  "$COSIGN" generate-key-pair >/dev/null 2>"$WORK/cosign.err" || { cat "$WORK/cosign.err" >&2; exit 1; }
  "$COSIGN" sign --key cosign.key --tlog-upload=false --allow-http-registry --allow-insecure-registry -y "$REF" \
    >/dev/null 2>"$WORK/cosign.err" || { cat "$WORK/cosign.err" >&2; exit 1; }
  "$COSIGN" verify --key cosign.pub --insecure-ignore-tlog --allow-http-registry --allow-insecure-registry "$REF" \
    >"$WORK/verify.json" 2>"$WORK/cosign.err" || { cat "$WORK/cosign.err" >&2; exit 1; }
) || fail "cosign failed"
jq -e --arg d "$ZASTAVA_TEST_IMAGE_DIGEST" '.[0].critical.image["docker-manifest-digest"] == $d' "$WORK/verify.json" >/dev/null ||
  fail "cosign verify output does not name $ZASTAVA_TEST_IMAGE_DIGEST"
log "smoke: cosign signature verified for $REF"
(
  cd "$WORK"
  echo '{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,"components":[]}' >sbom.json
  "$ORAS" attach --plain-http --artifact-type application/vnd.cyclonedx+json "$REF" \
    sbom.json:application/vnd.cyclonedx+json >/dev/null 2>"$WORK/oras.err" || { cat "$WORK/oras.err" >&2; exit 1; }
) || fail "oras attach failed"
"$ORAS" discover --plain-http --format json "$REF" >"$WORK/discover.json" 2>"$WORK/oras.err" ||
  { cat "$WORK/oras.err" >&2; fail "oras discover failed"; }
jq -e '[.. | objects | select(.artifactType? == "application/vnd.cyclonedx+json")] | length > 0' "$WORK/discover.json" >/dev/null ||
  fail "oras discover does not show the CycloneDX attachment: $(cat "$WORK/discover.json")"
log "smoke: oras discover shows the application/vnd.cyclonedx+json referrer"

step "delete namespace $NS and wait until it is gone"
kubectl delete ns "$NS" --wait=false >/dev/null || fail "cannot delete namespace"
kubectl wait --for=delete "ns/$NS" --timeout=180s >/dev/null 2>&1 || ! kubectl get ns "$NS" >/dev/null 2>&1 ||
  fail "namespace $NS still exists after 180 s"

log "SMOKE OK in $((SECONDS - T0)) s"
