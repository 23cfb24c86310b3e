#!/bin/bash
# Benchmarks behind the README's figures.
#   bash scripts/run_benchmark.sh preprocess|train|infer|parallel|collectives|all [--device_target=GPU] [--lines=N] [--work=DIR]
set -e
cd "$(dirname "$0")/.."
source scripts/find_python.sh
SUITE="${1:-all}"; shift || true
exec "$PY" -m src.tools.benchmark "$SUITE" "$@"
