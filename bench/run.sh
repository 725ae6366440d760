#!/usr/bin/env bash
# One command for the side-by-side benchmarks (walship, plain SQLite, Litestream): bash bench/run.sh
# Parameters are environment variables; see the header of bench/run.py. Results: bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
command -v npm >/dev/null || bash scripts/deps.sh npm
exec python3 bench/run.py "$@"
