# Two services in one container, in the background, and the shell waits for both.
set -m
nginx -g 'daemon off;' &
php-fpm --nodaemonize &
wait -n
exit $?
