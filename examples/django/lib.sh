# shellcheck shell=bash
# Shared by run.sh, disaster.sh and the end-to-end tests: build walship, start a replica store,
# start and stop the app (gunicorn behind Caddy). Source it; it sets EXAMPLE, ROOT and PY.
EXAMPLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$EXAMPLE/../.." && pwd)
PY=/usr/bin/python3  # Debian's python3: its sqlite3 module can load extensions (pyenv's cannot)
SETSID=${SETSID:-}

free_port() { "$PY" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# The settings in .env (Litestream style), unless the environment already has them. DB_PATH and
# REPLICA_URL (Litestream-style names) stand for WALSHIP_DB and WALSHIP_REPLICA_URL.
load_env() {
  local file=${ENV_FILE:-$EXAMPLE/.env} key value
  if [ -f "$file" ]; then
    while IFS='=' read -r key value || [ -n "$key" ]; do
      key=${key//[[:space:]]/}
      [[ -z "$key" || "$key" == \#* ]] && continue
      value=${value%\"}; value=${value#\"}; value=${value%\'}; value=${value#\'}
      [ -z "${!key:-}" ] && export "$key=$value"
    done <"$file"
  fi
  [ -z "${WALSHIP_DB:-}" ] && [ -n "${DB_PATH:-}" ] && export WALSHIP_DB=$DB_PATH
  [ -z "${WALSHIP_REPLICA_URL:-}" ] && [ -n "${REPLICA_URL:-}" ] && export WALSHIP_REPLICA_URL=$REPLICA_URL
  return 0
}

# Builds the extension and the command (Release) in build-release; sets WALSHIP_EXTENSION.
build_walship() {
  cmake -S "$ROOT" -B "$ROOT/build-release" -DCMAKE_BUILD_TYPE=Release -DWALSHIP_BUILD_TESTS=OFF >/dev/null
  cmake --build "$ROOT/build-release" -j"$(nproc)" --target walship_module walship_cli >/dev/null
  export WALSHIP_EXTENSION="$ROOT/build-release/libwalship"
}

# A replica location: the one configured, else a local S3-compatible server (moto, with the
# default python3 when it can import moto) on 127.0.0.1 with a new bucket, else a file://
# directory. Sets STORE_KIND (configured, moto, file).
start_store() {  # RUN_DIR
  local run=$1
  if [ -n "${WALSHIP_REPLICA_URL:-}" ]; then STORE_KIND=configured; return 0; fi
  if python3 -c 'import moto.server' 2>/dev/null; then
    WALSHIP_MOTO_PYTHON=$(command -v python3) bash "$ROOT/tests/support/s3server.sh" start "$run/moto" >/dev/null
    local ep; ep=$(cat "$run/moto/moto.endpoint")
    curl -sf -X PUT "$ep/walship-demo" -o /dev/null
    export WALSHIP_REPLICA_URL="s3://walship-demo/guestbook?endpoint=$ep&region=us-east-1&force_path_style=true"
    export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-${LITESTREAM_ACCESS_KEY_ID:-demo}}
    export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-${LITESTREAM_SECRET_ACCESS_KEY:-demo}}
    STORE_KIND=moto
  else
    mkdir -p "$run/replica"
    export WALSHIP_REPLICA_URL="file://$run/replica"
    STORE_KIND="file"
  fi
}

stop_store() {  # RUN_DIR
  [ -f "$1/moto/moto.pid" ] || return 0
  local pid; pid=$(cat "$1/moto/moto.pid")
  bash "$ROOT/tests/support/s3server.sh" stop "$1/moto" >/dev/null 2>&1 || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

# Migrates (walship restores the database first when the file is missing or empty), starts
# gunicorn (WORKERS, 4) on APP_PORT and Caddy on CADDY_PORT, waits until Caddy answers. With
# SETSID=setsid (run.sh) both run in their own session, so a Ctrl-C in the terminal reaches only
# the script, which then stops them gracefully.
start_app() {  # RUN_DIR
  local run=$1
  mkdir -p "$run" "$(dirname "$WALSHIP_DB")"
  export APP_PORT=${APP_PORT:-$(free_port)} CADDY_PORT=${CADDY_PORT:-8080}
  (cd "$EXAMPLE" && "$PY" manage.py migrate --noinput >>"$run/migrate.log" 2>&1) || { tail -30 "$run/migrate.log" >&2; return 1; }
  (cd "$EXAMPLE" && exec $SETSID "$PY" -m gunicorn --workers "${WORKERS:-4}" --bind "127.0.0.1:$APP_PORT" \
    --access-logfile - guestbook.wsgi) >>"$run/app.log" 2>&1 </dev/null &
  echo $! >"$run/gunicorn.pid"
  disown  # stop_app stops it; no "Killed" job notices, and a bare `wait` does not wait for it
  XDG_DATA_HOME="$run/caddy" XDG_CONFIG_HOME="$run/caddy" \
    $SETSID caddy run --config "$EXAMPLE/caddy/Caddyfile" --adapter caddyfile >>"$run/caddy.log" 2>&1 </dev/null &
  echo $! >"$run/caddy.pid"
  disown
  for _ in $(seq 1 150); do
    curl -sf "http://127.0.0.1:$CADDY_PORT/health" -o /dev/null && return 0
    kill -0 "$(cat "$run/gunicorn.pid")" 2>/dev/null && kill -0 "$(cat "$run/caddy.pid")" 2>/dev/null || break
    sleep 0.2
  done
  echo "the app did not come up; logs in $run" >&2
  tail -20 "$run/app.log" "$run/caddy.log" >&2
  return 1
}

# Stops gunicorn (master and workers) and Caddy. TERM: a graceful stop (the workers finish their
# requests and close the database, which ships what is left). KILL: kill -9, master first so it
# cannot boot replacement workers.
stop_app() {  # RUN_DIR [TERM|KILL]
  local run=$1 sig=${2:-TERM} f pid workers
  for f in gunicorn caddy; do
    [ -f "$run/$f.pid" ] || continue
    pid=$(cat "$run/$f.pid")
    workers=$(pgrep -P "$pid" 2>/dev/null || true)
    kill "-$sig" "$pid" 2>/dev/null || true
    # shellcheck disable=SC2086
    [ "$sig" = KILL ] && [ -n "$workers" ] && kill -KILL $workers 2>/dev/null
    for _ in $(seq 1 300); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    for w in $workers; do
      for _ in $(seq 1 50); do kill -0 "$w" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$w" 2>/dev/null || true
    done
    rm -f "$run/$f.pid"
  done
}

app_url() { echo "http://127.0.0.1:$CADDY_PORT"; }

note_count() { curl -sf "$(app_url)/notes.json" | "$PY" -c 'import json,sys;print(len(json.load(sys.stdin)["notes"]))'; }

# Posts a note through Caddy with the form's CSRF token; prints the HTTP status (302: saved).
post_note() {  # AUTHOR BODY
  local jar token
  jar=$(mktemp)
  curl -sf -c "$jar" "$(app_url)/" -o /dev/null
  token=$(awk '$6=="csrftoken"{print $7}' "$jar")
  curl -s -o /dev/null -w '%{http_code}' -b "$jar" -e "$(app_url)/" --max-time 60 \
    --data-urlencode "csrfmiddlewaretoken=$token" --data-urlencode "author=$1" --data-urlencode "body=$2" \
    "$(app_url)/" || true
  rm -f "$jar"
}

# The database and its companion files (-wal, -shm, and walship's -walship side file).
delete_database() { rm -f "$WALSHIP_DB" "$WALSHIP_DB-wal" "$WALSHIP_DB-shm" "$WALSHIP_DB-walship" "$WALSHIP_DB-walship-spill" "$WALSHIP_DB-journal"; }
