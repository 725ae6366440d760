#!/usr/bin/env bash
# The guestbook in headless Chromium (Debian's) through Caddy, with walship replicating to a local
# S3 server: a note added through the form, the page checked, and a screenshot saved as a test
# artifact (BUILD_DIR/artifacts/django.png). playwright-core (npm, no browser download) is
# installed into BUILD_DIR/e2e-node the first time.
#   django_browser.sh BUILD_DIR
set -euo pipefail
source "$(dirname "$0")/../../examples/django/lib.sh"
build=$1
export WALSHIP_EXTENSION=$build/libwalship
command -v chromium >/dev/null || bash "$ROOT/scripts/deps.sh" chromium
command -v npm >/dev/null || bash "$ROOT/scripts/deps.sh" nodejs npm
tools="$build/e2e-node"
if [ ! -d "$tools/node_modules/playwright-core" ]; then
  mkdir -p "$tools"
  (cd "$tools" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --silent --no-audit --no-fund --no-save playwright-core@1.65.1 >/dev/null)
fi
RUN=$(mktemp -d /tmp/walship-browser-XXXX)
export WALSHIP_DB="$RUN/data/db.sqlite3" CADDY_PORT=$(free_port)
unset WALSHIP_REPLICA_URL DB_PATH REPLICA_URL
export ENV_FILE=/nonexistent
cleanup() {
  local rc=$?
  stop_app "$RUN" KILL
  stop_store "$RUN"
  [ "$rc" = 0 ] || tail -30 "$RUN/app.log" "$RUN/migrate.log" 2>/dev/null
  rm -rf "$RUN"
}
trap cleanup EXIT
start_store "$RUN"
start_app "$RUN"
post_note "Ada" "First! Written with curl before the browser came." >/dev/null
post_note "Grace" "The database behind this page streams every commit to S3 from inside the gunicorn workers." >/dev/null
mkdir -p "$build/artifacts"
rm -f "$build/artifacts/django.png"
NODE_PATH="$tools/node_modules" timeout 120 node "$(dirname "$0")/django_browser.js" \
  "$(app_url)/" "$build/artifacts/django.png" "$RUN/chromium-profile"
[ -s "$build/artifacts/django.png" ]
