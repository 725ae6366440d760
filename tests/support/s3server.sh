#!/usr/bin/env bash
# Starts or stops the local S3-compatible server used by the test run (moto, on 127.0.0.1).
#   s3server.sh start DIR   -> writes DIR/moto.endpoint ("http://127.0.0.1:PORT") and DIR/moto.pid
#   s3server.sh stop DIR
set -euo pipefail
cmd=$1 dir=$2
mkdir -p "$dir"
py=${WALSHIP_MOTO_PYTHON:-$(command -v python3)}
case $cmd in
start)
  if [ -f "$dir/moto.pid" ] && kill -0 "$(cat "$dir/moto.pid")" 2>/dev/null; then exit 0; fi
  port=$("$py" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  nohup "$py" -m moto.server -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
  echo $! >"$dir/moto.pid"
  for _ in $(seq 1 100); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
      echo "http://127.0.0.1:$port" >"$dir/moto.endpoint"; echo "moto on port $port"; exit 0
    fi
    sleep 0.1
  done
  echo "moto did not start; log:" >&2; cat "$dir/moto.log" >&2; exit 1 ;;
stop)
  if [ -f "$dir/moto.pid" ]; then kill "$(cat "$dir/moto.pid")" 2>/dev/null || true; rm -f "$dir/moto.pid" "$dir/moto.endpoint"; fi ;;
esac
