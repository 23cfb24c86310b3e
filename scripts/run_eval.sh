#!/bin/bash
# Evaluate a checkpoint on the test split, in RUN_DIR (default output/eval_<target>_<id>/), with the python on PATH
# that has MindSpore (scripts/find_python.sh).
#   bash scripts/run_eval.sh DEVICE_ID DEVICE_TARGET DATASET_PATH CHECKPOINT_PATH [eval.py options]
set -e
if [ $# -lt 4 ]; then
  echo "usage: bash $0 DEVICE_ID DEVICE_TARGET DATASET_PATH CHECKPOINT_PATH [--key=value ...]" >&2; exit 2
fi
DEVICE_ID=$1; DEVICE_TARGET=$2; DATASET_PATH=$3; CHECKPOINT_PATH=$4; shift 4
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/args.sh"
need_count DEVICE_ID "$DEVICE_ID" 0
CONFIG=$(config_for "$DEVICE_TARGET")
need_dataset "$DATASET_PATH"
[ -e "$CHECKPOINT_PATH" ] || { echo "CHECKPOINT_PATH '$CHECKPOINT_PATH' does not exist" >&2; exit 2; }
DATASET_PATH="$(cd "$DATASET_PATH" && pwd)"
CHECKPOINT_PATH="$(realpath "$CHECKPOINT_PATH")"
source "$ROOT/scripts/find_python.sh"
RUN_DIR="${RUN_DIR:-$ROOT/output/eval_$(echo $DEVICE_TARGET | tr A-Z a-z)_$DEVICE_ID}"
mkdir -p "$RUN_DIR"; RUN_DIR="$(cd "$RUN_DIR" && pwd)"; cd "$RUN_DIR"
export DEVICE_ID
"$PY" "$ROOT/eval.py" --config_path="$ROOT/$CONFIG" --device_target="$DEVICE_TARGET" --dataset_path="$DATASET_PATH" \
  --checkpoint_path="$CHECKPOINT_PATH" --eval_file_name="$RUN_DIR/eval.log" "$@" 2>&1 | tee eval_run.log
exit ${PIPESTATUS[0]}
