# Alpine-style: busybox applets, a sidecar in the background, and no exec at the end: the
# shell stays as PID 1.
set -e
mkdir -p /run/app
su-exec app /usr/local/bin/app-sidecar &
trap 'kill $(jobs -p)' TERM
tail -f /dev/null
