# Shared by run.sh, disaster.sh and the end-to-end tests: build walship, start a replica store,
# start and stop the app (gunicorn behind Caddy). Source it; it sets EXAMPLE and ROOT.
EXAMPLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$EXAMPLE/../.." && pwd)
PY=/usr/bin/python3  # Debian's python3: its sqlite3 module can load extensions

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# The settings in .env (Litestream style), unless the environment already has them.
load_env() {
  local file=${ENV_FILE:-$EXAMPLE/.env}
  [ -f "$file" ] || return 0
  while IFS='=' read -r key value; do
    [[ -z "$key" || "$key" == \#* ]] && continue
    value=${value%\"}; value=${value#\"}
    [ -z "${!key:-}" ] && export "$key=$value"
  done < "$file"
}

build_walship() {
  cmake -S "$ROOT" -B "$ROOT/build-release" -DCMAKE_BUILD_TYPE=Release -DWALSHIP_BUILD_TESTS=OFF >/dev/null
  cmake --build "$ROOT/build-release" -j"$(nproc)" --target walship_module walship_cli >/dev/null
  export WALSHIP_EXTENSION="$ROOT/build-release/libwalship"
}

# A replica location: the one configured, else a local S3-compatible server (moto) on 127.0.0.1,
# else a file:// directory.
start_store() {  # RUN_DIR
  local run=$1
  if [ -n "${WALSHIP_REPLICA_URL:-}" ]; then return 0; fi
  if python3 -c 'import moto' 2>/dev/null; then
    bash "$ROOT/tests/support/s3server.sh" start "$run/moto" >/dev/null
    local ep; ep=$(cat "$run/moto/moto.endpoint")
    curl -sf -X PUT "$ep/walship-demo" -o /dev/null
    export WALSHIP_REPLICA_URL="s3://walship-demo/guestbook?endpoint=$ep"
    export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-${LITESTREAM_ACCESS_KEY_ID:-demo}}
    export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-${LITESTREAM_SECRET_ACCESS_KEY:-demo}}
  else
    mkdir -p "$run/replica"
    export WALSHIP_REPLICA_URL="file://$run/replica"
  fi
}

stop_store() { bash "$ROOT/tests/support/s3server.sh" stop "$1/moto" >/dev/null 2>&1 || true; }

start_app() {  # RUN_DIR: migrates (restoring the database if it is missing), starts gunicorn and Caddy
  local run=$1
  mkdir -p "$run" "$(dirname "$WALSHIP_DB")"
  export APP_PORT=${APP_PORT:-$(free_port)} CADDY_PORT=${CADDY_PORT:-8080}
  (cd "$EXAMPLE" && $PY manage.py migrate --noinput >"$run/migrate.log" 2>&1) || { cat "$run/migrate.log" >&2; return 1; }
  (cd "$EXAMPLE" && exec $PY -m gunicorn --workers "${WORKERS:-4}" --bind "127.0.0.1:$APP_PORT" guestbook.wsgi) >>"$run/app.log" 2>&1 &
  disown
  echo $! >"$run/gunicorn.pid"
  XDG_DATA_HOME="$run/caddy" XDG_CONFIG_HOME="$run/caddy" caddy run --config "$EXAMPLE/caddy/Caddyfile" --adapter caddyfile >>"$run/caddy.log" 2>&1 &
  disown
  echo $! >"$run/caddy.pid"
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$CADDY_PORT/health" -o /dev/null && return 0
    sleep 0.2
  done
  echo "the app did not come up; logs in $run" >&2
  tail -20 "$run/app.log" "$run/caddy.log" >&2
  return 1
}

stop_app() {  # RUN_DIR [SIGNAL]: stops gunicorn (master and workers) and Caddy
  local run=$1 sig=${2:-TERM} pid
  for f in gunicorn caddy; do
    [ -f "$run/$f.pid" ] || continue
    pid=$(cat "$run/$f.pid")
    [ "$f" = gunicorn ] && pkill "-$sig" -P "$pid" 2>/dev/null
    kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$run/$f.pid"
  done
}

note_count() { curl -sf "http://127.0.0.1:$CADDY_PORT/notes.json" | python3 -c 'import json,sys;print(len(json.load(sys.stdin)["notes"]))'; }

# Posts a note through Caddy with the form's CSRF token; prints the HTTP status.
post_note() {  # AUTHOR BODY
  local jar; jar=$(mktemp)
  curl -sf -c "$jar" "http://127.0.0.1:$CADDY_PORT/" -o /dev/null
  local token; token=$(awk '$6=="csrftoken"{print $7}' "$jar")
  curl -s -o /dev/null -w '%{http_code}' -b "$jar" -e "http://127.0.0.1:$CADDY_PORT/" \
    --data-urlencode "csrfmiddlewaretoken=$token" --data-urlencode "author=$1" --data-urlencode "body=$2" \
    "http://127.0.0.1:$CADDY_PORT/"
  rm -f "$jar"
}
