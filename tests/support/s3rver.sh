#!/usr/bin/env bash
# Starts or stops s3rver, the test run's second S3-compatible server (npm package, on 127.0.0.1).
#   s3rver.sh start DIR NODE_DIR -> installs s3rver into NODE_DIR when missing, writes
#                                   DIR/s3rver.endpoint ("http://127.0.0.1:PORT") and DIR/s3rver.pid
#   s3rver.sh stop DIR
# A failed install or start fails loudly (the tests that need s3rver then do not run and count as failed).
set -euo pipefail
cmd=$1 dir=$2
here=$(cd "$(dirname "$0")" && pwd)
version=3.7.1
mkdir -p "$dir"
case $cmd in
start)
  node_dir=$3
  if [ -f "$dir/s3rver.pid" ] && kill -0 "$(cat "$dir/s3rver.pid")" 2>/dev/null; then exit 0; fi
  command -v npm >/dev/null || bash "$here/../../scripts/deps.sh" nodejs npm
  if ! grep -qs "\"version\": \"$version\"" "$node_dir/node_modules/s3rver/package.json"; then
    echo "installing s3rver $version from npm into $node_dir"
    mkdir -p "$node_dir"
    (cd "$node_dir" && npm install --no-audit --no-fund --no-save "s3rver@$version" >"$dir/s3rver-npm.log" 2>&1) ||
      { echo "error: npm install s3rver@$version failed; log:" >&2; cat "$dir/s3rver-npm.log" >&2; exit 1; }
  fi
  rm -rf "$dir/s3rver-data" "$dir/s3rver.port"
  # s3rver makes ListObjectsV2 continuation tokens with DES, which OpenSSL 3 has only in its legacy provider.
  legacy=--openssl-legacy-provider; node $legacy -e 0 2>/dev/null || legacy=
  nohup node $legacy "$here/s3rver.js" "$node_dir/node_modules" "$dir/s3rver-data" >"$dir/s3rver.port" 2>"$dir/s3rver.log" &
  echo $! >"$dir/s3rver.pid"
  for _ in $(seq 1 100); do
    port=$(cat "$dir/s3rver.port")
    if [ -n "$port" ] && curl -s -o /dev/null "http://127.0.0.1:$port/"; then
      echo "http://127.0.0.1:$port" >"$dir/s3rver.endpoint"; echo "s3rver on port $port"; exit 0
    fi
    sleep 0.1
  done
  echo "s3rver did not start; log:" >&2; cat "$dir/s3rver.log" >&2; exit 1 ;;
stop)
  if [ -f "$dir/s3rver.pid" ]; then kill "$(cat "$dir/s3rver.pid")" 2>/dev/null || true; rm -f "$dir/s3rver.pid" "$dir/s3rver.endpoint"; fi
  rm -rf "$dir/s3rver-data" ;;
esac
