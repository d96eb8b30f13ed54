#!/usr/bin/env bash
# Restarts the node observer run.sh started, for the tests that need it configured otherwise:
#   observer.sh stop     SIGTERM (SIGKILL after 15 s)
#   observer.sh kill     SIGKILL at once: no flush, no goodbye
#   observer.sh start    start it (ZASTAVA_OBSERVER_CRI_SOCKET / ZASTAVA_OBSERVER_BACKEND_URL
#                        from the environment, see zastava.sh) and wait until it is ready
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=cluster/lib.sh
. tests/e2e/cluster/lib.sh
# shellcheck disable=SC1090
. "$ENV_FILE"
# shellcheck source=zastava.sh
. tests/e2e/zastava.sh

case ${1:-} in
  stop) zastava_stop_observer ;;
  kill)
    if zastava_running "$ZASTAVA_OBSERVER_PID"; then
      kill -KILL "$(cat "$ZASTAVA_OBSERVER_PID")"
      rm -f "$ZASTAVA_OBSERVER_PID"
      log "zastava-observer killed (SIGKILL)"
    fi
    ;;
  start) zastava_start_observer ;;
  *) die "usage: observer.sh stop|kill|start" ;;
esac
