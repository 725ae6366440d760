#!/usr/bin/env bash
# End to end: the guestbook (examples/django) behind Caddy, 4 gunicorn workers, replicating to a
# local S3 server (moto) with durability=remote (a POST that returned success is in the bucket).
# Round 1: 30 notes POSTed through Caddy, three at a time (several workers write), then every app
# process (gunicorn master, workers, Caddy) is killed with SIGKILL and the database files (db,
# -wal, -shm, -walship, -walship-spill) are deleted. The stack starts again; walship restores the database, and
# every note whose POST succeeded must be listed through Caddy. Round 2 does it again on the
# restored database (10 more notes), so replication continues after a restore.
#   django_e2e.sh BUILD_DIR
set -euo pipefail
source "$(dirname "$0")/../../examples/django/lib.sh"
build=$1
export WALSHIP_EXTENSION=$build/libwalship
RUN=$(mktemp -d /tmp/walship-e2e-XXXX)
export WALSHIP_DB="$RUN/data/db.sqlite3" CADDY_PORT=$(free_port) WALSHIP_DURABILITY=remote WALSHIP_LOG_LEVEL=info
unset WALSHIP_REPLICA_URL DB_PATH REPLICA_URL
export ENV_FILE=/nonexistent  # the test's settings only, whatever examples/django/.env says
cleanup() {
  local rc=$?
  stop_app "$RUN" KILL
  stop_store "$RUN"
  if [ "$rc" != 0 ]; then
    echo "--- FAILED; logs:"
    tail -40 "$RUN/app.log" "$RUN/migrate.log" "$RUN/caddy.log" 2>/dev/null
  fi
  rm -rf "$RUN"
}
trap cleanup EXIT

start_store "$RUN"
[ "$STORE_KIND" = moto ] || { echo "moto is needed for this test (python3 -m moto.server)"; exit 1; }
start_app "$RUN"
for _ in $(seq 1 100); do  # the master forks its workers one by one: wait for all four
  workers=$(pgrep -c -P "$(cat "$RUN/gunicorn.pid")" || true)
  [ "$workers" = 4 ] && break
  sleep 0.1
done
echo "gunicorn: $workers workers behind Caddy on port $CADDY_PORT; replica ${WALSHIP_REPLICA_URL%%\?*}"
[ "$workers" = 4 ]

ok_file=$RUN/ok
: >"$ok_file"
post_round() {  # ROUND COUNT: COUNT notes, 3 in flight at a time; bodies of the saved ones go to $ok_file
  local round=$1 count=$2 i pids=()
  for i in $(seq 1 "$count"); do
    (
      body="round $round note $i $RANDOM$RANDOM"
      code=$(post_note "tester $((i % 4))" "$body")
      if [ "$code" = 302 ]; then echo "$body" >>"$ok_file"; else echo "POST $body: HTTP $code"; fi
    ) &
    pids+=($!)
    if [ "${#pids[@]}" = 3 ] || [ "$i" = "$count" ]; then
      wait "${pids[@]}"  # these POSTs only: a bare wait would wait for gunicorn and Caddy too
      pids=()
    fi
  done
}

crash_and_restore() {  # kill -9 everything, delete the database files, start again
  local pid
  pid=$(cat "$RUN/gunicorn.pid")
  stop_app "$RUN" KILL
  if pgrep -f "127.0.0.1:$APP_PORT" >/dev/null; then echo "app processes survived kill -9"; exit 1; fi
  ls -a "$(dirname "$WALSHIP_DB")"
  delete_database
  if ls "$WALSHIP_DB"* >/dev/null 2>&1; then echo "database files left"; exit 1; fi
  : >"$RUN/migrate.log"
  start_app "$RUN"
  grep -q "walship INFO restored $WALSHIP_DB" "$RUN/migrate.log" || { echo "no restore logged"; cat "$RUN/migrate.log"; exit 1; }
  grep -h "walship INFO restored" "$RUN/migrate.log" | sed 's/?[^ ]*//'
  [ "$(cat "$RUN/gunicorn.pid")" != "$pid" ]
}

check_listed() {  # every saved note is listed through Caddy
  local listed missing=0 body
  listed=$(curl -sf "$(app_url)/notes.json")
  while IFS= read -r body; do
    grep -qF "\"$body\"" <<<"$listed" || { echo "MISSING after restore: $body"; missing=$((missing + 1)); }
  done <"$ok_file"
  echo "$(wc -l <"$ok_file") notes saved, $("$PY" -c 'import json,sys;print(len(json.loads(sys.argv[1])["notes"]))' "$listed") listed after the restore, $missing missing"
  [ "$missing" = 0 ]
}

post_round 1 30
echo "round 1: $(wc -l <"$ok_file") of 30 POSTs succeeded"
[ "$(wc -l <"$ok_file")" = 30 ]
crash_and_restore
check_listed

post_round 2 10
echo "round 2: $(($(wc -l <"$ok_file") - 30)) of 10 POSTs succeeded"
[ "$(wc -l <"$ok_file")" = 40 ]
crash_and_restore
check_listed
echo "PASS: every note whose POST succeeded survived kill -9 and the loss of the database files, twice"
