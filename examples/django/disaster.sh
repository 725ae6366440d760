#!/usr/bin/env bash
# The bad day: stop the app, delete the database (and its -wal, -shm, -walship and -walship-spill
# files), start again: walship restores the database from the replica before the first connection opens, and
# every note is back. Prints the note count before and after.
#
# While run.sh is running, this acts on that stack (the notes you wrote in the browser come back):
# a graceful stop, in which walship ships what is left as the workers close their connections.
# Otherwise it runs a stack of its own with durability=remote (a POST that succeeded is in the
# bucket), writes 10 notes and kills every app process with SIGKILL.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUN=${RUN_DIR:-$EXAMPLE/data/run}

if [ -f "$RUN/stack.env" ] && [ -f "$RUN/gunicorn.pid" ] && kill -0 "$(cat "$RUN/gunicorn.pid")" 2>/dev/null; then
  source "$RUN/stack.env"
  touch "$RUN/busy"
  trap 'rm -f "$RUN/busy"' EXIT
  echo "acting on the stack run.sh started ($(app_url)/)"
  before=$(note_count)
  echo "before: $before notes; stopping the app (gunicorn and Caddy) and deleting $WALSHIP_DB*"
  stop_app "$RUN" TERM
  how="stopped"
else
  bash "$ROOT/scripts/deps.sh" python3-django gunicorn caddy
  load_env
  echo "building walship (Release, build-release/)..."
  build_walship
  RUN=$(mktemp -d /tmp/walship-disaster-XXXX)
  export WALSHIP_DB="$RUN/data/db.sqlite3" CADDY_PORT=$(free_port)
  export WALSHIP_DURABILITY=${WALSHIP_DURABILITY:-remote}  # a POST that succeeded is in the bucket
  trap 'stop_app "$RUN" KILL; stop_store "$RUN"; rm -rf "$RUN"' EXIT
  start_store "$RUN"
  start_app "$RUN"
  echo "a stack of its own at $(app_url)/ (run.sh is not running), durability=$WALSHIP_DURABILITY"
  for i in $(seq 1 10); do
    [ "$(post_note "disaster demo" "note $i written at $(date +%T.%N)")" = 302 ] || echo "POST $i failed" >&2
  done
  before=$(note_count)
  echo "before: $before notes; killing gunicorn (master and 4 workers) and Caddy with SIGKILL, deleting $WALSHIP_DB*"
  stop_app "$RUN" KILL
  how="killed"
fi

delete_database
ls "$WALSHIP_DB"* >/dev/null 2>&1 && { echo "could not delete the database files" >&2; exit 1; }
echo "app $how, database files deleted; starting again (walship restores from ${WALSHIP_REPLICA_URL%%\?*})"
start_app "$RUN"
after=$(note_count)
echo "after:  $after notes"
grep -h "walship INFO restored" "$RUN/migrate.log" 2>/dev/null | tail -1 | sed 's/?[^ ]*//'
if [ "$after" = "$before" ]; then
  echo "all $after notes are back"
else
  echo "LOST NOTES: $before before, $after after" >&2
  exit 1
fi
