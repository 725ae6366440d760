#!/usr/bin/env bash
# The README's test command: installs what is missing, builds walship twice (normal, and with
# AddressSanitizer + UndefinedBehaviorSanitizer) and runs the whole test suite in both.
# The local S3-compatible server is moto (python3 -m moto.server), started by the test run; the S3
# client and VFS integration tests run again against s3rver (npm, label "s3rver", normal build only).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh python3-django gunicorn caddy chromium zstd faketime
if ! python3 -c 'import moto, botocore' 2>/dev/null; then
  echo "error: the default python3 ($(command -v python3)) needs moto and botocore (preinstalled in the pyenv python3)" >&2
  exit 1
fi
command -v npm >/dev/null || bash scripts/deps.sh nodejs npm  # the browser test and s3rver come from the npm registry
jobs=$(nproc)
echo "== build (RelWithDebInfo)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
echo "== tests"
ctest --test-dir build --output-on-failure -j2 --timeout 900
echo "== build (ASan + UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DWALSHIP_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
echo "== tests under ASan + UBSan (frontends that load the module into other programs, and the s3rver reruns, are skipped)"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j2 --timeout 900 -LE 'frontend|django|bench|s3rver'
echo "== all tests passed"
