#!/usr/bin/env bash
# The main job: the guestbook (Django 3.2, 4 gunicorn workers, Caddy in front) on SQLite,
# replicating through walship to the replica configured in .env, else to a local S3-compatible
# server (moto on 127.0.0.1), else to a file:// directory. Runs until Ctrl-C.
#   CADDY_PORT (8080), APP_PORT (free), WORKERS (4), ENV_FILE (examples/django/.env)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bash "$ROOT/scripts/deps.sh" python3-django gunicorn caddy
load_env
echo "building walship (Release, build-release/)..."
build_walship
RUN=${RUN_DIR:-$EXAMPLE/data/run}
export WALSHIP_DB=${WALSHIP_DB:-$EXAMPLE/data/db.sqlite3}
if [ -f "$RUN/stack.env" ] && [ -f "$RUN/gunicorn.pid" ] && kill -0 "$(cat "$RUN/gunicorn.pid")" 2>/dev/null; then
  echo "the guestbook is already running (see $RUN); stop that one first" >&2
  exit 1
fi
mkdir -p "$RUN"
# One stack per data directory. The check above has a window (stack.env appears once the app is
# up): two run.sh started seconds apart both came up, on one database, and fought over its files.
exec 9>"$RUN/run.lock"
if ! flock -n 9; then
  echo "the guestbook is already running or starting (another run.sh holds $RUN/run.lock); stop that one first" >&2
  exit 1
fi
SETSID=setsid  # gunicorn and Caddy in their own session: Ctrl-C reaches this script, which stops them
stopped=0
cleanup() {
  [ "$stopped" = 1 ] && return; stopped=1
  echo; echo "stopping (a graceful stop: walship ships what is left as the workers close)..."
  rm -f "$RUN/stack.env"
  stop_app "$RUN" TERM
  stop_store "$RUN"
  echo "stopped"
}
trap cleanup EXIT
trap 'exit 0' INT TERM
start_store "$RUN"
start_app "$RUN"
# What disaster.sh needs to act on this running stack.
{
  for v in WALSHIP_EXTENSION WALSHIP_DB WALSHIP_REPLICA_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY APP_PORT CADDY_PORT; do
    [ -n "${!v:-}" ] && printf 'export %s=%q\n' "$v" "${!v}"
  done
  echo "STORE_KIND=$STORE_KIND"
} >"$RUN/stack.env"
chmod 600 "$RUN/stack.env"
case $STORE_KIND in
moto) store_note="a local S3 server (moto, in memory: the replica lives as long as this script)" ;;
file) store_note="a local directory (moto is not installed)" ;;
*) store_note="the replica configured in .env / the environment" ;;
esac
cat <<MSG

  Guestbook running at  $(app_url)/    (admin: /admin/, data: /notes.json, status: /health)
  4 gunicorn workers on 127.0.0.1:$APP_PORT behind Caddy
  database:             $WALSHIP_DB
  replica:              ${WALSHIP_REPLICA_URL%%\?*}  -- $store_note
  logs:                 $RUN/app.log (walship's lifecycle lines are there too), $RUN/migrate.log

  In another terminal: bash examples/django/disaster.sh
    (stops the app, deletes the database, starts it again: the notes come back from the replica)
  Ctrl-C stops everything.
MSG
# disaster.sh holds $RUN/busy while it stops and restarts the app.
while [ -f "$RUN/stack.env" ]; do
  if [ ! -f "$RUN/busy" ] && ! { [ -f "$RUN/gunicorn.pid" ] && kill -0 "$(cat "$RUN/gunicorn.pid")" 2>/dev/null; }; then
    echo "gunicorn has stopped; see $RUN/app.log" >&2
    exit 1
  fi
  sleep 1
done
