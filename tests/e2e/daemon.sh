#!/usr/bin/env bash
# Stops and starts daemons of the local cluster, for the tests that need one of them down:
#   daemon.sh stop NAME        stop NAME (a DAEMONS entry of cluster/up.sh, e.g. registry)
#   daemon.sh start            start whatever is not running (cluster/up.sh)
#   daemon.sh restart NAME     stop NAME, keep it down ZASTAVA_DOWNTIME seconds (5), start
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=cluster/lib.sh
. tests/e2e/cluster/lib.sh

stop_daemon() {
  local name=$1 pid_file=$PID_DIR/$1.pid pid
  [[ -s $pid_file ]] || die "no $name pid file: is the cluster up?"
  pid=$(cat "$pid_file")
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  # A killed daemon can linger as a zombie until PID 1 reaps it; state Z counts as gone.
  running() { [[ -r /proc/$pid/stat ]] && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; }
  local i
  # SIGTERM lets the apiserver drain open watches, which can take a minute; a supervisor
  # kills after a grace period.
  for ((i = 0; i < 40; i++)); do
    running || return 0
    sleep 0.5
  done
  log "$name still running after 20s; SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 20; i++)); do
    running || return 0
    sleep 0.5
  done
  die "$name did not stop"
}

case ${1:-} in
  stop) stop_daemon "${2:?daemon name}" ;;
  start) bash tests/e2e/cluster/up.sh ;;
  restart)
    stop_daemon "${2:?daemon name}"
    log "$2 down; starting it again in ${ZASTAVA_DOWNTIME:-5}s"
    sleep "${ZASTAVA_DOWNTIME:-5}"
    bash tests/e2e/cluster/up.sh
    ;;
  *) die "usage: daemon.sh stop NAME | start | restart NAME" ;;
esac
