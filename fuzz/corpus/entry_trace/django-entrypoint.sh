set -e
# A Python web app: wait for the database, migrate, then hand over to gunicorn (a console
# script whose #! names the interpreter).

if [ -n "$DATABASE_URL" ]; then
    python /app/manage.py wait_for_db
fi
python /app/manage.py migrate --noinput
python /app/manage.py collectstatic --noinput --clear

: "${GUNICORN_WORKERS:=4}"
exec gunicorn mysite.wsgi:application \
    --bind "0.0.0.0:${PORT:-8000}" \
    --workers "$GUNICORN_WORKERS" \
    "$@"
