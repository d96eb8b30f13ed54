#!/usr/bin/env bash
# Installing and running Zastava against the local cluster; sourced by run.sh and demo.sh after
# cluster/lib.sh and the cluster's env file.
#
# The components run as host processes against the cluster's kubeconfig (config/ runs them as
# Deployments; on this embedded cluster a host process is what can be built without an image).
# The apiserver calls the webhook by URL (there is no kube-proxy here), and the operator issues
# the webhook's certificate for that URL's IP.

ZASTAVA_NAMESPACE=zastava-system
ZASTAVA_OPERATOR_ADDR=127.0.0.1:18080
ZASTAVA_OPERATOR_PID=$PID_DIR/zastava-operator.pid
ZASTAVA_OPERATOR_LOG=$LOG_DIR/zastava-operator.log
ZASTAVA_WEBHOOK_ADDR=127.0.0.1:9443
ZASTAVA_WEBHOOK_URL=https://$ZASTAVA_WEBHOOK_ADDR/validate
ZASTAVA_WEBHOOK_HTTP_ADDR=127.0.0.1:18081
ZASTAVA_WEBHOOK_PID=$PID_DIR/zastava-webhook.pid
ZASTAVA_WEBHOOK_LOG=$LOG_DIR/zastava-webhook.log
ZASTAVA_OBSERVER_ADDR=127.0.0.1:18082
ZASTAVA_OBSERVER_PID=$PID_DIR/zastava-observer.pid
ZASTAVA_OBSERVER_LOG=$LOG_DIR/zastava-observer.log

zastava_build() {
  log "building Zastava (cargo build --workspace --bins --tests)"
  cargo build --workspace --bins --tests --locked
  cargo build --locked -p zastava-e2e --test incluster
}

zastava_install_crds() {
  log "installing the CRDs and namespace $ZASTAVA_NAMESPACE"
  kubectl apply -f crds/zastavapolicies.zastava.stellaops.io.yaml \
    -f crds/runtimepostures.zastava.stellaops.io.yaml
  kubectl wait --for condition=established --timeout=60s \
    crd/zastavapolicies.zastava.stellaops.io crd/runtimepostures.zastava.stellaops.io
  kubectl create namespace "$ZASTAVA_NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
}

zastava_running() { # pidfile
  [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

# Starts NAME (pidfile, log, readiness URL, then the command with its environment) unless it
# runs already, and waits up to 90 s for the readiness URL.
zastava_start() { # name pidfile log ready-url command...
  local name=$1 pidfile=$2 logfile=$3 ready=$4
  shift 4
  if zastava_running "$pidfile"; then
    log "$name already running (pid $(cat "$pidfile"))"
    return
  fi
  log "starting $name (log: $logfile)"
  setsid env "$@" >>"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
  local i
  for ((i = 0; i < 90; i++)); do
    if curl -fsS "$ready" >/dev/null 2>&1; then
      log "$name ready"
      return
    fi
    zastava_running "$pidfile" || break
    sleep 1
  done
  tail -n 40 "$logfile" >&2 || true
  die "$name did not become ready"
}

# SIGTERM, then SIGKILL after 15 s (the operator releases its Lease, the webhook drains).
zastava_stop() { # name pidfile
  local name=$1 pidfile=$2 pid i
  zastava_running "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 15; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  log "$name stopped"
}

zastava_start_operator() {
  zastava_start zastava-operator "$ZASTAVA_OPERATOR_PID" "$ZASTAVA_OPERATOR_LOG" \
    "http://$ZASTAVA_OPERATOR_ADDR/readyz" \
    ZASTAVA_NAMESPACE="$ZASTAVA_NAMESPACE" ZASTAVA_HTTP_ADDR="$ZASTAVA_OPERATOR_ADDR" \
    POD_NAME=zastava-operator-e2e ZASTAVA_LEASE_DURATION_SECONDS=10 \
    ZASTAVA_WEBHOOK_URL="$ZASTAVA_WEBHOOK_URL" \
    target/debug/zastava-operator
}

# Ready once it has synced the policies and loaded the certificate the operator issued.
zastava_start_webhook() {
  zastava_start zastava-webhook "$ZASTAVA_WEBHOOK_PID" "$ZASTAVA_WEBHOOK_LOG" \
    "http://$ZASTAVA_WEBHOOK_HTTP_ADDR/readyz" \
    ZASTAVA_NAMESPACE="$ZASTAVA_NAMESPACE" ZASTAVA_WEBHOOK_ADDR="$ZASTAVA_WEBHOOK_ADDR" \
    ZASTAVA_HTTP_ADDR="$ZASTAVA_WEBHOOK_HTTP_ADDR" ZASTAVA_INSECURE_REGISTRIES="$ZASTAVA_REGISTRY" \
    ZASTAVA_REGISTRY_TIMEOUT_MS=2000 ZASTAVA_SHUTDOWN_DELAY_SECONDS=0 \
    target/debug/zastava-webhook serve
}

# The node observer reads the CRI socket and the host's /proc, as the DaemonSet does. Tests
# that restart it (tests/e2e/observer.sh) may point it at another CRI socket
# (ZASTAVA_OBSERVER_CRI_SOCKET) or give it a backend (ZASTAVA_OBSERVER_BACKEND_URL); its event
# buffer lives in the cluster's state directory, so it survives restarts as the DaemonSet's
# emptyDir does.
zastava_start_observer() {
  zastava_start zastava-observer "$ZASTAVA_OBSERVER_PID" "$ZASTAVA_OBSERVER_LOG" \
    "http://$ZASTAVA_OBSERVER_ADDR/readyz" \
    ZASTAVA_NAMESPACE="$ZASTAVA_NAMESPACE" ZASTAVA_HTTP_ADDR="$ZASTAVA_OBSERVER_ADDR" \
    ZASTAVA_INSECURE_REGISTRIES="$ZASTAVA_REGISTRY" \
    ZASTAVA_BACKEND_URL="${ZASTAVA_OBSERVER_BACKEND_URL:-}" \
    ZASTAVA_BUFFER_DIR="$STATE/observer-buffer" \
    target/debug/zastava-observer run --node "$ZASTAVA_NODE" \
    --cri-socket "${ZASTAVA_OBSERVER_CRI_SOCKET:-$CONTAINERD_SOCK}"
}

zastava_stop_operator() { zastava_stop zastava-operator "$ZASTAVA_OPERATOR_PID"; }
zastava_stop_observer() { zastava_stop zastava-observer "$ZASTAVA_OBSERVER_PID"; }
zastava_stop_webhook() { zastava_stop zastava-webhook "$ZASTAVA_WEBHOOK_PID"; }

# Deletes the webhook configuration and every ZastavaPolicy left by tests: with the webhook
# stopped, its configuration would refuse every governed pod.
zastava_remove_webhook_configuration() {
  kubectl delete validatingwebhookconfiguration zastava-webhook --ignore-not-found >/dev/null
  local leftovers
  leftovers=$(kubectl get zastavapolicies -o name 2>/dev/null | grep '/e2e-' || true)
  # shellcheck disable=SC2086 # one argument per object name
  [[ -z $leftovers ]] || kubectl delete $leftovers >/dev/null
}
