#!/usr/bin/env bash
# The main job: the guestbook (Django, 4 gunicorn workers, Caddy in front) on SQLite, replicating
# through walship to a local S3-compatible server (moto on 127.0.0.1; a file:// directory when
# moto is missing), or to the replica configured in .env. Runs until Ctrl-C.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bash "$ROOT/scripts/deps.sh" python3-django gunicorn caddy
load_env
echo "building walship (Release)..."
build_walship
RUN=${RUN_DIR:-$EXAMPLE/data/run}
export WALSHIP_DB=${WALSHIP_DB:-$EXAMPLE/data/db.sqlite3}
trap 'echo; echo stopping...; stop_app "$RUN"; stop_store "$RUN"; exit 0' INT TERM
start_store "$RUN"
start_app "$RUN"
cat <<MSG

  Guestbook running at  http://127.0.0.1:$CADDY_PORT/   (admin: /admin/, data: /notes.json)
  database:             $WALSHIP_DB
  replica:              ${WALSHIP_REPLICA_URL%%\?*}
  logs:                 $RUN/app.log (walship's lifecycle lines are there too)

  Try: bash examples/django/disaster.sh   (stops everything, deletes the database, gets it back)
  Ctrl-C stops.
MSG
while kill -0 "$(cat "$RUN/gunicorn.pid")" 2>/dev/null; do sleep 1; done
