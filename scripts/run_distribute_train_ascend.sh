#!/bin/bash
# Distributed training on Ascend with an HCCL rank table: one process per device.
#   bash scripts/run_distribute_train_ascend.sh DEVICE_NUM DATASET_PATH RANK_TABLE_FILE [train.py options]
# Rank i runs on device i with DEVICE_ID=RANK_ID=i, RANK_SIZE=DEVICE_NUM, in output/train_distribute_ascend/log<i>/
# (train.log there). batch_size is per rank. PARALLEL_MODE=hybrid_parallel (default) or data_parallel.
# If a rank fails, the others are stopped and the job exits non-zero with that rank's error.
set -e
if [ $# -lt 3 ]; then
  echo "usage: bash $0 DEVICE_NUM DATASET_PATH RANK_TABLE_FILE [--key=value ...]" >&2; exit 2
fi
DEVICE_NUM=$1; DATASET_PATH=$2; RANK_TABLE_FILE=$3; shift 3
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/args.sh"
need_count DEVICE_NUM "$DEVICE_NUM" 1
need_dataset "$DATASET_PATH"
[ -f "$RANK_TABLE_FILE" ] || { echo "RANK_TABLE_FILE '$RANK_TABLE_FILE' does not exist" >&2; exit 2; }
DATASET_PATH="$(cd "$DATASET_PATH" && pwd)"
export RANK_TABLE_FILE="$(realpath "$RANK_TABLE_FILE")"
export RANK_SIZE=$DEVICE_NUM
source "$ROOT/scripts/setup_env.sh"
RUN_DIR="${RUN_DIR:-$ROOT/output/train_distribute_ascend}"
mkdir -p "$RUN_DIR"; RUN_DIR="$(cd "$RUN_DIR" && pwd)"
declare -A RANK_OF
PIDS=()
for ((i = 0; i < DEVICE_NUM; i++)); do
  mkdir -p "$RUN_DIR/log$i"
  ( cd "$RUN_DIR/log$i" && DEVICE_ID=$i RANK_ID=$i exec "$PY" "$ROOT/train.py" --config_path="$ROOT/npu_config.yaml" \
      --device_target=Ascend --parallel_mode="${PARALLEL_MODE:-hybrid_parallel}" --dataset_path="$DATASET_PATH" \
      --ckpt_path="$RUN_DIR/ckpt" --loss_file_name="$RUN_DIR/loss.log" --eval_file_name="$RUN_DIR/eval.log" "$@" \
      > "$RUN_DIR/log$i/train.log" 2>&1 ) &
  PIDS+=($!); RANK_OF[$!]=$i
done
echo "started $DEVICE_NUM ranks, logs in $RUN_DIR/log<i>/train.log"
trap 'kill "${PIDS[@]}" 2>/dev/null' INT TERM
LEFT=$DEVICE_NUM
set +e
while [ $LEFT -gt 0 ]; do
  wait -n -p DONE "${PIDS[@]}"; RC=$?
  LEFT=$((LEFT - 1))
  if [ $RC -ne 0 ]; then
    r=${RANK_OF[$DONE]}
    echo "==== rank $r failed (exit code $RC); stopping the other ranks. $RUN_DIR/log$r/train.log ends with:" >&2
    grep -v -E '^\[(INFO|WARNING|DEBUG)\]' "$RUN_DIR/log$r/train.log" | grep -v -E '^\s*$' | tail -15 | sed 's/^/  /' >&2
    kill "${PIDS[@]}" 2>/dev/null
    wait 2>/dev/null
    exit 1
  fi
done
grep -v -E '^\[(INFO|WARNING|DEBUG)\]' "$RUN_DIR/log0/train.log" | tail -5
