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

# ------------------------------------------- the daemon's RSS with 50 real containers
# The real `zastava-observer run` (release build) on the local cluster's node while 50 pods
# run there: 25 of busybox, 25 of the image with a dynamically linked program (libraries
# sampled and hashed). Steady state = every container tracked and three drift passes done;
# then VmRSS is read every 2 s for 30 s. The cluster is brought up if needed and torn down
# again if it was not up before; the namespace and the observer go in any case.
RSS_NS=zastava-bench-rss
RSS_PODS=50
RSS_ADDR=127.0.0.1:18092
TARGET_RSS_MB=30

cluster_was_up=0
cluster_answers && cluster_was_up=1
bash tests/e2e/cluster/up.sh
# shellcheck disable=SC1090
. "$ENV_FILE"
# shellcheck source=zastava.sh
. tests/e2e/zastava.sh
RSS_PID_FILE=$PID_DIR/zastava-observer-bench.pid
RSS_LOG=$LOG_DIR/zastava-observer-bench.log

rss_cleanup() {
  local rc=$?
  zastava_stop zastava-observer-bench "$RSS_PID_FILE" || true
  kubectl delete namespace "$RSS_NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  if ((cluster_was_up == 0)); then
    bash tests/e2e/cluster/down.sh || true
  fi
  exit "$rc"
}
trap rss_cleanup EXIT

cargo build --release --locked -p zastava-observer --bin zastava-observer
zastava_install_crds >/dev/null
kubectl create namespace "$RSS_NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
for flavour in busybox dynamic; do
  if [[ $flavour == busybox ]]; then image=$ZASTAVA_TEST_IMAGE; cmd='["sleep","3600"]'; else
    image=$ZASTAVA_DYN_IMAGE; cmd='["/bin/sh","-c","exec /opt/dyn/bin/sleep 3600"]'; fi
  kubectl apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: $flavour, namespace: $RSS_NS}
spec:
  replicas: $((RSS_PODS / 2))
  selector: {matchLabels: {app: $flavour}}
  template:
    metadata: {labels: {app: $flavour}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: app, image: "$image", command: $cmd}]
YAML
done
log "waiting for $RSS_PODS pods in $RSS_NS"
kubectl -n "$RSS_NS" rollout status deployment/busybox --timeout=900s >/dev/null
kubectl -n "$RSS_NS" rollout status deployment/dynamic --timeout=900s >/dev/null

zastava_start zastava-observer-bench "$RSS_PID_FILE" "$RSS_LOG" "http://$RSS_ADDR/readyz" \
  ZASTAVA_NAMESPACE="$ZASTAVA_NAMESPACE" ZASTAVA_HTTP_ADDR="$RSS_ADDR" \
  ZASTAVA_INSECURE_REGISTRIES="$ZASTAVA_REGISTRY" \
  target/release/zastava-observer run --node "$ZASTAVA_NODE" --cri-socket "$CONTAINERD_SOCK"
tracked() { curl -fsS "http://$RSS_ADDR/metrics" | awk '$1 == "zastava_observer_containers" { print int($2) }'; }
for ((i = 0; i < 120; i++)); do
  (($(tracked || echo 0) >= RSS_PODS)) && break
  sleep 1
done
(($(tracked || echo 0) >= RSS_PODS)) || die "the observer tracks $(tracked) containers, not $RSS_PODS"
# Three drift passes (every 5 s) over every container.
sleep 16
pid=$(cat "$RSS_PID_FILE")
samples=()
for ((i = 0; i < 15; i++)); do
  samples+=("$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")")
  sleep 2
done
printf '%s\n' "${samples[@]}" | sort -n | awk -v target="$TARGET_RSS_MB" -v n="$(tracked)" '
  { v[NR] = $1 }
  END {
    median = v[int((NR + 1) / 2)] / 1024; max = v[NR] / 1024
    printf "observer daemon RSS, %d containers tracked: median %.1f MB, max %.1f MB over %d samples (target < %d MB: %s)\n",
      n, median, max, NR, target, (max < target ? "met" : "NOT met")
  }'
