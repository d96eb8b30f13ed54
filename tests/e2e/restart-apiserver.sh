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
# A killed daemon can linger as a zombie until PID 1 reaps it; state Z counts as gone.
running() { [[ -r /proc/$pid/stat ]] && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; }
wait_gone() {
  local i
  for ((i = 0; i < $1 * 2; i++)); do
    running || return 0
    sleep 0.5
  done
  return 1
}
# SIGTERM drains open watches, which can take a minute; a supervisor kills after a grace period.
if ! wait_gone 20; then
  log "kube-apiserver still draining after 20s; SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  wait_gone 10 || die "kube-apiserver did not stop"
fi
down_for=${ZASTAVA_APISERVER_DOWNTIME:-5}
log "kube-apiserver down; starting it again in ${down_for}s"
sleep "$down_for"
bash tests/e2e/cluster/up.sh
