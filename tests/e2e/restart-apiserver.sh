#!/usr/bin/env bash
# Stops the local cluster's kube-apiserver, keeps it down for a few seconds, and starts it again
# through up.sh (which starts only what is missing). Used by the apiserver_restart e2e test.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=cluster/lib.sh
. tests/e2e/cluster/lib.sh

pid_file=$PID_DIR/kube-apiserver.pid
[[ -s $pid_file ]] || die "no kube-apiserver pid file: is the cluster up?"
pid=$(cat "$pid_file")
log "stopping kube-apiserver (pid $pid)"
kill -TERM "$pid"
for ((i = 0; i < 60; i++)); do
  [[ -d /proc/$pid ]] || break
  sleep 0.5
done
[[ ! -d /proc/$pid ]] || die "kube-apiserver did not stop"
down_for=${ZASTAVA_APISERVER_DOWNTIME:-5}
log "kube-apiserver down; starting it again in ${down_for}s"
sleep "$down_for"
bash tests/e2e/cluster/up.sh
