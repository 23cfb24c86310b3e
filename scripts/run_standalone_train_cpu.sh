#!/bin/bash
# Single-process training on CPU.
#   bash scripts/run_standalone_train_cpu.sh DATASET_PATH [train.py options]
set -e
if [ $# -lt 1 ]; then echo "usage: bash $0 DATASET_PATH [--key=value ...]" >&2; exit 2; fi
DATASET_PATH=$1; shift
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
exec bash "$ROOT/scripts/run_standalone_train_ascend.sh" 0 CPU "$DATASET_PATH" "$@"
