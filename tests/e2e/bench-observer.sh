#!/usr/bin/env bash
# `make bench-observer`, each part measured against its target in the same run:
# - sampling and hashing of a process mapping 64 and 256 libraries (cold and warm hash cache)
#   against `openssl dgst -sha256` over the same files, and the steady RSS of the sampling
#   path with 50 processes (observer/benches/sampling.rs);
# - runtime events through the real outbox to a backend on loopback: sustained events a minute,
#   its ceiling, and a 30 s backend outage after which every eventId must arrive
#   (observer/benches/outbox.rs; exits 1 when an event is lost);
# - the real daemon (release build) on the local cluster's node at 50 and at 110 pods: CPU,
#   RSS, drift rounds and API writes while nothing changes (below).
# Installs Debian's `openssl` when it is missing (the ceiling the sampling bench compares with).
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
cargo bench --locked -p zastava-observer --bench outbox

# ------------------------------------------- the daemon at node scale
# The real `zastava-observer run` (release build, a host process, as the e2e tests run it) on
# the local node, first with 50 pods, then with 110 (kubelet's default maximum). Three kinds
# of pod, a third each roughly: busybox sleeping; the image with a dynamically linked program
# (libraries sampled and hashed); and three containers sharing one network namespace, one of
# them listening (busybox httpd), the others sleeping. At each size, once every container is
# tracked and three drift rounds are done, over QUIET_SECONDS with no container change:
# utime+stime from /proc/<pid>/stat as % of one core, VmRSS every 2 s (median and max), the
# drift rounds' mean wall and CPU time (the daemon's own metrics), and the API writes made
# (posture patches and Events; the target is none). Then one pod is replaced and the posture
# patches that follows are counted (one change: one patch per workload it touched).
# The cluster is brought up if needed and torn down again if it was not up before; the
# namespace and the observer go in any case.
NS=zastava-bench-node
ADDR=127.0.0.1:18092
QUIET_SECONDS=${QUIET_SECONDS:-120}
SIZES=(50 110)
TARGET_CPU_PCT=1     # the issue: half the seed's 2 % of a core
SEED_CPU_PCT=2
TARGET_RSS_MB=30
SEED_RSS_MB=100

cluster_was_up=0
cluster_answers && cluster_was_up=1
bash tests/e2e/cluster/up.sh
# shellcheck disable=SC1090
. "$ENV_FILE"
# shellcheck source=zastava.sh
. tests/e2e/zastava.sh
PID_FILE=$PID_DIR/zastava-observer-bench.pid
OBS_LOG=$LOG_DIR/zastava-observer-bench.log

node_cleanup() {
  local rc=$?
  zastava_stop zastava-observer-bench "$PID_FILE" || true
  kubectl delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  if ((cluster_was_up == 0)); then
    bash tests/e2e/cluster/down.sh || true
  fi
  exit "$rc"
}
trap node_cleanup EXIT

cargo build --release --locked -p zastava-observer --bin zastava-observer
zastava_install_crds >/dev/null
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
others=$(kubectl get pods -A --field-selector "spec.nodeName=$ZASTAVA_NODE,status.phase!=Succeeded,status.phase!=Failed" \
  -o jsonpath='{range .items[*]}{.metadata.namespace}{"\n"}{end}' | grep -cvx "$NS" || true)
((others == 0)) || log "note: $others pods of other namespaces run on the node; the largest size is cut to fit"

deploy() { # name replicas containers-json
  kubectl apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: $1, namespace: $NS}
spec:
  replicas: $2
  selector: {matchLabels: {app: $1}}
  template:
    metadata: {labels: {app: $1}}
    spec:
      terminationGracePeriodSeconds: 1
      enableServiceLinks: false
      containers: $3
YAML
}
SLEEP='["sleep","3600"]'
DYN_SLEEP='["/bin/sh","-c","exec /opt/dyn/bin/sleep 3600"]'
scale_to() { # pods
  local pods=$1 trio busybox dynamic
  trio=$((pods * 3 / 11))
  busybox=$(((pods - trio) / 2))
  dynamic=$((pods - trio - busybox))
  deploy busybox "$busybox" "[{name: app, image: \"$ZASTAVA_TEST_IMAGE\", command: $SLEEP}]"
  deploy dynamic "$dynamic" "[{name: app, image: \"$ZASTAVA_DYN_IMAGE\", command: $DYN_SLEEP}]"
  deploy trio "$trio" "[{name: web, image: \"$ZASTAVA_TEST_IMAGE\", command: [\"httpd\",\"-f\",\"-p\",\"8080\"]},
    {name: side, image: \"$ZASTAVA_TEST_IMAGE\", command: $SLEEP},
    {name: dyn, image: \"$ZASTAVA_DYN_IMAGE\", command: $DYN_SLEEP}]"
  CONTAINERS=$((busybox + dynamic + 3 * trio))
  log "scaling to $pods pods ($busybox busybox, $dynamic dynamic, $trio of three containers: $CONTAINERS containers)"
  local d
  for d in busybox dynamic trio; do
    kubectl -n "$NS" rollout status "deployment/$d" --timeout=900s >/dev/null
  done
}

metric() { # name [label filter]: the sum of the series of that name
  curl -fsS "http://$ADDR/metrics" | awk -v name="$1" -v filter="${2:-}" '
    { split($1, a, "{") } a[1] == name && index($1, filter) { sum += $2 } END { printf "%.6f\n", sum + 0 }'
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$(cat "$PID_FILE")/stat"; }
wait_tracked() { # containers
  local i
  for ((i = 0; i < 300; i++)); do
    (($(metric zastava_observer_containers | cut -d. -f1) >= $1)) && return
    sleep 1
  done
  die "the observer tracks $(metric zastava_observer_containers) containers, not $1"
}

measure() { # pods
  local pods=$1 pid hz t0 t1 c0 c1 w0 w1 r0 r1 rc0 rc1 rs0 rs1 i samples=()
  wait_tracked "$CONTAINERS"
  # Three drift rounds (every 5 s) over every container, and the posture writes they cause.
  sleep 16
  pid=$(cat "$PID_FILE")
  hz=$(getconf CLK_TCK)
  w0=$(metric zastava_observer_api_writes_total)
  rc0=$(metric zastava_observer_drift_round_seconds_count)
  rs0=$(metric zastava_observer_drift_round_seconds_sum)
  r0=$(metric zastava_observer_drift_round_cpu_seconds_total)
  c0=$(cpu_ticks) t0=$(date +%s.%N)
  for ((i = 0; i < QUIET_SECONDS / 2; i++)); do
    samples+=("$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")")
    sleep 2
  done
  c1=$(cpu_ticks) t1=$(date +%s.%N)
  w1=$(metric zastava_observer_api_writes_total)
  rc1=$(metric zastava_observer_drift_round_seconds_count)
  rs1=$(metric zastava_observer_drift_round_seconds_sum)
  r1=$(metric zastava_observer_drift_round_cpu_seconds_total)
  printf '%s\n' "${samples[@]}" | sort -n | awk -v pods="$pods" -v n="$CONTAINERS" \
    -v cpu="$(awk -v a="$c0" -v b="$c1" -v hz="$hz" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.3f", (b - a) / hz / (t1 - t0) * 100 }')" \
    -v secs="$(awk -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f", t1 - t0 }')" \
    -v writes="$(awk -v a="$w0" -v b="$w1" 'BEGIN { printf "%d", b - a }')" \
    -v rounds="$(awk -v a="$rc0" -v b="$rc1" 'BEGIN { printf "%d", b - a }')" \
    -v wall="$(awk -v a="$rs0" -v b="$rs1" -v c0="$rc0" -v c1="$rc1" 'BEGIN { if (c1 > c0) printf "%.2f", (b - a) / (c1 - c0) * 1000; else print "n/a" }')" \
    -v rcpu="$(awk -v a="$r0" -v b="$r1" -v c0="$rc0" -v c1="$rc1" 'BEGIN { if (c1 > c0) printf "%.2f", (b - a) / (c1 - c0) * 1000; else print "n/a" }')" \
    -v tcpu="$TARGET_CPU_PCT" -v scpu="$SEED_CPU_PCT" -v trss="$TARGET_RSS_MB" -v srss="$SEED_RSS_MB" '
    { v[NR] = $1 }
    END {
      median = v[int((NR + 1) / 2)] / 1024; max = v[NR] / 1024
      printf "observer daemon, %d pods (%d containers), %d s with no container change:\n", pods, n, secs
      printf "  CPU %.2f %% of one core (utime+stime; target <= %g %%: %s; seed < %g %%: %s)\n", cpu, tcpu,
        (cpu <= tcpu ? "met" : "NOT met"), scpu, (cpu < scpu ? "met" : "NOT met")
      printf "  RSS median %.1f MB, max %.1f MB over %d samples (target < %d MB: %s; seed < %d MB: %s)\n",
        median, max, NR, trss, (max < trss ? "met" : "NOT met"), srss, (max < srss ? "met" : "NOT met")
      printf "  drift rounds: %d, mean %s ms wall, %s ms CPU each\n", rounds, wall, rcpu
      printf "  API writes (posture patches, Events): %d (target 0: %s)\n", writes, (writes == 0 ? "met" : "NOT met")
    }'
}

started=0
for pods in "${SIZES[@]}"; do
  pods=$((pods - others))
  scale_to "$pods"
  if ((started == 0)); then
    zastava_start zastava-observer-bench "$PID_FILE" "$OBS_LOG" "http://$ADDR/readyz" \
      ZASTAVA_NAMESPACE="$ZASTAVA_NAMESPACE" ZASTAVA_HTTP_ADDR="$ADDR" \
      ZASTAVA_INSECURE_REGISTRIES="$ZASTAVA_REGISTRY" \
      target/release/zastava-observer run --node "$ZASTAVA_NODE" --cri-socket "$CONTAINERD_SOCK"
    started=1
  fi
  measure "$pods"
done

# One real change: a pod replaced (its ReplicaSet starts another). Its workload's posture
# gets the stopped container out and the new one in.
posture_writes() { awk -v a="$(metric zastava_observer_api_writes_total 'what="status"')" \
  -v b="$(metric zastava_observer_api_writes_total 'what="posture"')" 'BEGIN { print a + b }'; }
p0=$(posture_writes)
victim=$(kubectl -n "$NS" get pods -l app=dynamic -o jsonpath='{.items[0].metadata.name}')
kubectl -n "$NS" delete pod "$victim" --wait=true >/dev/null
kubectl -n "$NS" rollout status deployment/dynamic --timeout=300s >/dev/null
wait_tracked "$CONTAINERS"
sleep 12
p1=$(posture_writes)
awk -v a="$p0" -v b="$p1" 'BEGIN { printf "one pod replaced: %d posture patches (its workload: the old container out, the new one in)\n", b - a }'
