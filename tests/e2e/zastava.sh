#!/usr/bin/env bash
# Installing and running Zastava against the local cluster; sourced by run.sh and demo.sh after
# cluster/lib.sh and the cluster's env file.

ZASTAVA_NAMESPACE=zastava-system
ZASTAVA_OPERATOR_ADDR=127.0.0.1:18080
ZASTAVA_OPERATOR_PID=$PID_DIR/zastava-operator.pid
ZASTAVA_OPERATOR_LOG=$LOG_DIR/zastava-operator.log
# The webhook runs as a host process too; the apiserver calls it by URL (no kube-proxy here),
# and the operator issues its certificate for that URL's IP.
ZASTAVA_WEBHOOK_ADDR=127.0.0.1:9443
ZASTAVA_WEBHOOK_URL=https://$ZASTAVA_WEBHOOK_ADDR/validate
ZASTAVA_WEBHOOK_HTTP_ADDR=127.0.0.1:18081
ZASTAVA_WEBHOOK_PID=$PID_DIR/zastava-webhook.pid
ZASTAVA_WEBHOOK_LOG=$LOG_DIR/zastava-webhook.log

zastava_build() {
  log "building Zastava (cargo build --workspace --bins --tests)"
  cargo build --workspace --bins --tests --locked
}

zastava_install_crds() {
  log "installing the CRDs and namespace $ZASTAVA_NAMESPACE"
  kubectl apply -f crds/zastavapolicies.zastava.stellaops.io.yaml \
    -f crds/runtimepostures.zastava.stellaops.io.yaml
  kubectl wait --for condition=established --timeout=60s \
    crd/zastavapolicies.zastava.stellaops.io crd/runtimepostures.zastava.stellaops.io
  kubectl create namespace "$ZASTAVA_NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
}

zastava_operator_running() {
  [[ -s $ZASTAVA_OPERATOR_PID ]] && kill -0 "$(cat "$ZASTAVA_OPERATOR_PID")" 2>/dev/null
}

# Runs the operator as a host process against the cluster's kubeconfig (the chart runs it as a
# Deployment; on this embedded cluster a host process is what can be built without an image).
zastava_start_operator() {
  if zastava_operator_running; then
    log "zastava-operator already running (pid $(cat "$ZASTAVA_OPERATOR_PID"))"
    return
  fi
  log "starting zastava-operator (log: $ZASTAVA_OPERATOR_LOG)"
  ZASTAVA_NAMESPACE=$ZASTAVA_NAMESPACE ZASTAVA_HTTP_ADDR=$ZASTAVA_OPERATOR_ADDR \
    POD_NAME=zastava-operator-e2e ZASTAVA_LEASE_DURATION_SECONDS=10 \
    ZASTAVA_WEBHOOK_URL=$ZASTAVA_WEBHOOK_URL \
    setsid target/debug/zastava-operator >>"$ZASTAVA_OPERATOR_LOG" 2>&1 </dev/null &
  echo $! >"$ZASTAVA_OPERATOR_PID"
  local i
  for ((i = 0; i < 60; i++)); do
    if curl -fsS "http://$ZASTAVA_OPERATOR_ADDR/readyz" >/dev/null 2>&1; then
      log "zastava-operator ready on http://$ZASTAVA_OPERATOR_ADDR"
      return
    fi
    zastava_operator_running || break
    sleep 1
  done
  tail -n 40 "$ZASTAVA_OPERATOR_LOG" >&2 || true
  die "zastava-operator did not become ready"
}

# SIGTERM, then SIGKILL after 15 s: the operator releases its Lease on a graceful stop.
zastava_stop_operator() {
  zastava_operator_running || { rm -f "$ZASTAVA_OPERATOR_PID"; return 0; }
  local pid i
  pid=$(cat "$ZASTAVA_OPERATOR_PID")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 15; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$ZASTAVA_OPERATOR_PID"
  log "zastava-operator stopped"
}

zastava_webhook_running() {
  [[ -s $ZASTAVA_WEBHOOK_PID ]] && kill -0 "$(cat "$ZASTAVA_WEBHOOK_PID")" 2>/dev/null
}

# The webhook turns ready once it has synced the policies and loaded the serving certificate
# the operator issued through a CSR.
zastava_start_webhook() {
  if zastava_webhook_running; then
    log "zastava-webhook already running (pid $(cat "$ZASTAVA_WEBHOOK_PID"))"
    return
  fi
  log "starting zastava-webhook (log: $ZASTAVA_WEBHOOK_LOG)"
  ZASTAVA_NAMESPACE=$ZASTAVA_NAMESPACE ZASTAVA_WEBHOOK_ADDR=$ZASTAVA_WEBHOOK_ADDR \
    ZASTAVA_HTTP_ADDR=$ZASTAVA_WEBHOOK_HTTP_ADDR ZASTAVA_INSECURE_REGISTRIES=$ZASTAVA_REGISTRY \
    ZASTAVA_REGISTRY_TIMEOUT_MS=2000 \
    setsid target/debug/zastava-webhook serve >>"$ZASTAVA_WEBHOOK_LOG" 2>&1 </dev/null &
  echo $! >"$ZASTAVA_WEBHOOK_PID"
  local i
  for ((i = 0; i < 90; i++)); do
    if curl -fsS "http://$ZASTAVA_WEBHOOK_HTTP_ADDR/readyz" >/dev/null 2>&1; then
      log "zastava-webhook ready on $ZASTAVA_WEBHOOK_URL"
      return
    fi
    zastava_webhook_running || break
    sleep 1
  done
  tail -n 40 "$ZASTAVA_WEBHOOK_LOG" >&2 || true
  die "zastava-webhook did not become ready"
}

zastava_stop_webhook() {
  zastava_webhook_running || { rm -f "$ZASTAVA_WEBHOOK_PID"; return 0; }
  local pid i
  pid=$(cat "$ZASTAVA_WEBHOOK_PID")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 15; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$ZASTAVA_WEBHOOK_PID"
  log "zastava-webhook stopped"
}

# Deletes the webhook configuration and every ZastavaPolicy left by tests.
zastava_remove_webhook_configuration() {
  kubectl delete validatingwebhookconfiguration zastava-webhook --ignore-not-found >/dev/null
  kubectl get zastavapolicies -o name 2>/dev/null | grep '/e2e-' | xargs -r kubectl delete >/dev/null
}
