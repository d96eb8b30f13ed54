set -e
# Debian-style hooks: every executable in /etc/entrypoint.d runs before the service starts.
if [ -d /etc/entrypoint.d ]; then
	run-parts --exit-on-error --arg=start /etc/entrypoint.d
fi
exec "$@"
