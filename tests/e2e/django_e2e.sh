#!/usr/bin/env bash
# End to end: Caddy + gunicorn (4 workers) + a local S3 server. Notes are created through HTTP via
# Caddy (durability=remote: a POST that succeeded is in the bucket), then every app process is
# killed with SIGKILL, the database files are deleted, the stack starts again, and every note whose
# POST succeeded must be listed again through Caddy.
set -euo pipefail
source "$(dirname "$0")/../../examples/django/lib.sh"
export WALSHIP_EXTENSION=${WALSHIP_EXTENSION:-$1/libwalship}
RUN=$(mktemp -d /tmp/walship-e2e-XXXX)
export WALSHIP_DB="$RUN/data/db.sqlite3" CADDY_PORT=$(free_port) WALSHIP_DURABILITY=remote
unset WALSHIP_REPLICA_URL
trap 'stop_app "$RUN" KILL; stop_store "$RUN"; rm -rf "$RUN"' EXIT
start_store "$RUN"
start_app "$RUN"
ok=()
for i in $(seq 1 30); do
  body="e2e note $i $RANDOM$RANDOM"
  code=$(post_note "tester $((i % 4))" "$body")
  [ "$code" = 302 ] && ok+=("$body")
done
echo "${#ok[@]} of 30 POSTs succeeded"
[ "${#ok[@]}" -ge 25 ]
stop_app "$RUN" KILL
rm -f "$WALSHIP_DB" "$WALSHIP_DB-wal" "$WALSHIP_DB-shm"
start_app "$RUN"
listed=$(curl -sf "http://127.0.0.1:$CADDY_PORT/notes.json")
missing=0
for body in "${ok[@]}"; do
  grep -qF "\"$body\"" <<<"$listed" || { echo "MISSING after restore: $body"; missing=$((missing + 1)); }
done
echo "after kill -9, delete and restart: $(python3 -c 'import json,sys;print(len(json.loads(sys.argv[1])["notes"]))' "$listed") notes listed, $missing missing"
[ "$missing" = 0 ]
