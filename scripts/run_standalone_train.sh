#!/bin/bash
# Single-device training on Ascend, GPU or CPU (the config file follows DEVICE_TARGET), in RUN_DIR
# (default output/train_standalone_<target>_<id>/). Runs the python on PATH that has MindSpore (scripts/find_python.sh).
#   bash scripts/run_standalone_train.sh DEVICE_ID DEVICE_TARGET DATASET_PATH [train.py options]
# The model-zoo names run_standalone_train_{ascend,gpu,cpu}.sh call this.
set -e
if [ $# -lt 3 ]; then
  echo "usage: bash $0 DEVICE_ID DEVICE_TARGET DATASET_PATH [--key=value ...]" >&2; exit 2
fi
DEVICE_ID=$1; DEVICE_TARGET=$2; DATASET_PATH=$3; shift 3
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/args.sh"
need_count DEVICE_ID "$DEVICE_ID" 0
CONFIG="$ROOT/$(config_for "$DEVICE_TARGET")"
need_dataset "$DATASET_PATH"
DATASET_PATH="$(cd "$DATASET_PATH" && pwd)"
source "$ROOT/scripts/find_python.sh"
RUN_DIR="${RUN_DIR:-$ROOT/output/train_standalone_$(echo $DEVICE_TARGET | tr A-Z a-z)_$DEVICE_ID}"
mkdir -p "$RUN_DIR"; RUN_DIR="$(cd "$RUN_DIR" && pwd)"; cd "$RUN_DIR"
export DEVICE_ID RANK_ID=0 RANK_SIZE=1
echo "training on $DEVICE_TARGET:$DEVICE_ID, logs in $RUN_DIR (train.log, loss.log, eval.log)"
"$PY" "$ROOT/train.py" --config_path="$CONFIG" --device_target="$DEVICE_TARGET" --dataset_path="$DATASET_PATH" \
  --ckpt_path="$RUN_DIR/ckpt" --loss_file_name="$RUN_DIR/loss.log" --eval_file_name="$RUN_DIR/eval.log" "$@" 2>&1 | tee train.log
exit ${PIPESTATUS[0]}
