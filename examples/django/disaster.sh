#!/usr/bin/env bash
# The bad day, on this machine: start the stack, write notes, kill everything with SIGKILL, delete
# the database (and its -wal, -shm), start again: the notes come back from the replica.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bash "$ROOT/scripts/deps.sh" python3-django gunicorn caddy
load_env
build_walship
RUN=$(mktemp -d /tmp/walship-disaster-XXXX)
export WALSHIP_DB="$RUN/data/db.sqlite3" CADDY_PORT=${CADDY_PORT:-$(free_port)}
export WALSHIP_DURABILITY=${WALSHIP_DURABILITY:-remote}  # a POST that succeeded is in the bucket
trap 'stop_app "$RUN" KILL; stop_store "$RUN"; rm -rf "$RUN"' EXIT
start_store "$RUN"
start_app "$RUN"
for i in $(seq 1 10); do post_note "disaster demo" "note $i written at $(date +%T.%N)" >/dev/null; done
before=$(note_count)
echo "before: $before notes; killing the app with SIGKILL and deleting $WALSHIP_DB"
stop_app "$RUN" KILL
rm -f "$WALSHIP_DB" "$WALSHIP_DB-wal" "$WALSHIP_DB-shm"
echo "starting again (walship restores the database from ${WALSHIP_REPLICA_URL%%\?*})"
start_app "$RUN"
after=$(note_count)
echo "after:  $after notes"
grep -h "walship INFO restored" "$RUN/migrate.log" "$RUN/app.log" 2>/dev/null | tail -1
[ "$after" = "$before" ] && echo "all $after notes are back" || { echo "LOST NOTES: $before before, $after after" >&2; exit 1; }
