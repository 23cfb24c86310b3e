#!/bin/bash
# Benchmarks behind the README's figures.
#   bash scripts/run_benchmark.sh preprocess|csv|csv_multihot|train|multihot|quality|compact|infer|infer_cpp|parallel|collectives|terabyte|plan|all [--device_target=GPU] [--lines=N] [--work=DIR]
set -e
cd "$(dirname "$0")/.."
source scripts/find_python.sh
SUITE="${1:-all}"; shift || true
exec "$PY" -m src.tools.benchmark "$SUITE" "$@"
