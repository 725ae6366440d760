#!/usr/bin/env bash
# The guestbook in headless Chromium (Debian's) through Caddy: a note added through the form, the
# page checked, and a screenshot saved as a test artifact (BUILD_DIR/artifacts/django.png).
set -euo pipefail
source "$(dirname "$0")/../../examples/django/lib.sh"
build=$1
export WALSHIP_EXTENSION=$build/libwalship
command -v chromium >/dev/null || bash "$ROOT/scripts/deps.sh" chromium
tools="$build/e2e-node"
if [ ! -d "$tools/node_modules/playwright-core" ]; then
  mkdir -p "$tools" && (cd "$tools" && npm install --silent --no-audit --no-fund playwright-core@1 >/dev/null)
fi
RUN=$(mktemp -d /tmp/walship-browser-XXXX)
export WALSHIP_DB="$RUN/data/db.sqlite3" CADDY_PORT=$(free_port)
unset WALSHIP_REPLICA_URL
trap 'stop_app "$RUN" KILL; stop_store "$RUN"; rm -rf "$RUN"' EXIT
start_store "$RUN"
start_app "$RUN"
mkdir -p "$build/artifacts"
NODE_PATH="$tools/node_modules" node "$(dirname "$0")/django_browser.js" "http://127.0.0.1:$CADDY_PORT/" "$build/artifacts/django.png"
