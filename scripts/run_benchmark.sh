#!/bin/bash
# Benchmarks behind the README's figures.
#   bash scripts/run_benchmark.sh preprocess|preprocess_workers|csv|csv_multihot|train|multihot|quality|time_to_quality|real_rows|gemm|kernels|compact|infer|infer_cpp|parallel|collectives|terabyte|plan|predict|serve|all [--device_target=GPU] [--lines=N] [--work=DIR] [--seeds=N] [--recipes=A,B]
set -e
cd "$(dirname "$0")/.."
source scripts/find_python.sh
SUITE="${1:-all}"; shift || true
exec "$PY" -m src.tools.benchmark "$SUITE" "$@"
