set -e
# `set --` rewrites of the command: a leading flag means "the server, with this flag".
if [ "${1#-}" != "$1" ]; then
	set -- server "$@"
fi
# The server always gets its config file.
if [ "$1" = 'server' ]; then
	shift
	set -- /usr/local/bin/myapp serve --config /etc/myapp/config.yaml "$@"
fi
exec "$@"
