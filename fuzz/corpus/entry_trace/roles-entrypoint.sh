set -e
# One image, several roles chosen by the environment; settings and helpers are sourced.
. /etc/default/app
source "${APP_HOME}/lib/common.sh"

log "starting as ${APP_ROLE:-default}"
case "$APP_ROLE" in
  web)
    exec web-server --port "$PORT"
    ;;
  worker|jobs)
    exec /opt/app/bin/worker --queue "${QUEUE:-default}"
    ;;
  migrate)
    /opt/app/bin/migrate --wait
    ;;
  *)
    exec "$@"
    ;;
esac
