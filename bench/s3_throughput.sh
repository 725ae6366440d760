#!/usr/bin/env bash
# PUT/GET throughput of walship's S3 client next to `aws s3 cp`, on the same files, against a local
# moto server that this script starts and stops. Prints a Markdown table (MB/s; ratio = walship/aws).
#
#   bench/s3_throughput.sh                 # builds into $BUILD_DIR (default /tmp/walship-bench-build)
#   WALSHIP_S3BENCH=/path/to/walship-s3bench bench/s3_throughput.sh   # use an existing binary
#   SMALL_N=20 LARGE_N=3 bench/s3_throughput.sh                        # iterations per size
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-/tmp/walship-bench-build}
small_n=${SMALL_N:-20}
large_n=${LARGE_N:-3}
work=$(mktemp -d /tmp/walship-bench.XXXXXX)
cleanup() { "$src/tests/support/s3server.sh" stop "$work/moto" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

bench=${WALSHIP_S3BENCH:-}
if [ -z "$bench" ]; then
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" --target walship_s3bench -j2 >/dev/null
  bench=$build/bench/walship-s3bench
fi

"$src/tests/support/s3server.sh" start "$work/moto" >/dev/null
ep=$(cat "$work/moto/moto.endpoint")
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
aws s3api create-bucket --bucket bench --endpoint-url "$ep" >/dev/null

now() { date +%s.%N; }
mbps() { python3 -c "import sys; print('%.1f' % (float(sys.argv[1]) * float(sys.argv[2]) / (float(sys.argv[4]) - float(sys.argv[3]))))" "$@"; }
ratio() { python3 -c "import sys; print('%.2f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$@"; }

t0=$(now); aws --version >/dev/null 2>&1; t1=$(now)
aws_start=$(python3 -c "print('%.2f' % ($t1 - $t0))")

echo "| object | iterations | walship PUT MB/s | aws PUT MB/s | PUT ratio | walship GET MB/s | aws GET MB/s | GET ratio |"
echo "|---|---|---|---|---|---|---|---|"
for spec in "1:$small_n" "64:$large_n"; do
  mb=${spec%%:*} n=${spec##*:}
  f=$work/obj-${mb}M
  head -c $((mb << 20)) /dev/urandom >"$f"
  line=$("$bench" "s3://bench/walship-${mb}?endpoint=$ep" "$f" "$n")
  w_put=$(sed -E 's/.*put_mbps=([0-9.]+).*/\1/' <<<"$line")
  w_get=$(sed -E 's/.*get_mbps=([0-9.]+).*/\1/' <<<"$line")
  t0=$(now)
  for i in $(seq 1 "$n"); do aws s3 cp --quiet "$f" "s3://bench/aws-${mb}/$i" --endpoint-url "$ep"; done
  t1=$(now)
  for i in $(seq 1 "$n"); do aws s3 cp --quiet "s3://bench/aws-${mb}/$i" "$f.down" --endpoint-url "$ep"; done
  t2=$(now)
  cmp -s "$f" "$f.down" || { echo "aws download differs" >&2; exit 1; }
  a_put=$(mbps "$mb" "$n" "$t0" "$t1")
  a_get=$(mbps "$mb" "$n" "$t1" "$t2")
  echo "| ${mb} MB | $n | $w_put | $a_put | $(ratio "$w_put" "$a_put") | $w_get | $a_get | $(ratio "$w_get" "$a_get") |"
done
echo
echo "aws CLI start-up alone (aws --version): ${aws_start} s per invocation; each aws s3 cp above pays it."
