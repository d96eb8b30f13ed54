set -eu
# Run as root by tini: fix ownership, then re-run this script as the app user.
if [ "$(id -u)" = '0' ]; then
    chown -R app:app /var/lib/app
    exec su-exec app "$0" "$@"
fi
exec "$@"
