#!/usr/bin/env bash
# One command for the side-by-side benchmarks (see run.py): bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
exec python3 bench/run.py "$@"
