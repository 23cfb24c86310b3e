#!/bin/bash
# Distributed training with msrun, one process per device (GPU: NCCL) or per worker (CPU: mccl on 127.0.0.1).
#   bash scripts/run_distribute_train_gpu.sh DEVICE_NUM DATASET_PATH [train.py options]
#   bash scripts/run_distribute_train_cpu.sh WORKER_NUM DATASET_PATH [train.py options]
# batch_size is per rank. PARALLEL_MODE=hybrid_parallel (default: table rows split across ranks) or
# data_parallel; a --parallel_mode=... option wins. MASTER_PORT picks the port (default: a free one).
# Logs: output/train_distribute_<target>/log/worker_<rank>.log; loss.log, eval.log and the merged
# checkpoint (ckpt/) come from rank 0, shards in ckpt/rank_<k>/. If a rank fails, the job exits
# non-zero and prints that rank's error.
set -e
DEVICE_TARGET=${DEVICE_TARGET:-GPU}
if [ $# -lt 2 ]; then
  echo "usage: bash $0 $([ "$DEVICE_TARGET" = CPU ] && echo WORKER_NUM || echo DEVICE_NUM) DATASET_PATH [--key=value ...]" >&2; exit 2
fi
NUM=$1; DATASET_PATH=$2; shift 2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/args.sh"
need_count "the number of ranks" "$NUM" 1
[ "$DEVICE_TARGET" != Ascend ] || { echo "Ascend: use run_distribute_train_ascend.sh (rank table)" >&2; exit 2; }
CONFIG=$(config_for "$DEVICE_TARGET")
need_dataset "$DATASET_PATH"
DATASET_PATH="$(cd "$DATASET_PATH" && pwd)"
source "$ROOT/scripts/setup_env.sh"          # the venv's bin on PATH: msrun starts plain `python`
RUN_DIR="${RUN_DIR:-$ROOT/output/train_distribute_$(echo "$DEVICE_TARGET" | tr A-Z a-z)}"
mkdir -p "$RUN_DIR"
RUN_DIR="$(cd "$RUN_DIR" && pwd)"
cd "$RUN_DIR"
rm -rf log
PORT="${MASTER_PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
echo "training on $NUM $DEVICE_TARGET ranks (${PARALLEL_MODE:-hybrid_parallel}), logs in $RUN_DIR/log/worker_<rank>.log"
msrun --worker_num="$NUM" --local_worker_num="$NUM" --master_addr=127.0.0.1 --master_port="$PORT" --join=True \
  --log_dir="$RUN_DIR/log" python "$ROOT/train.py" --config_path="$ROOT/$CONFIG" --device_target="$DEVICE_TARGET" \
  --parallel_mode="${PARALLEL_MODE:-hybrid_parallel}" --dataset_path="$DATASET_PATH" --ckpt_path="$RUN_DIR/ckpt" \
  --loss_file_name="$RUN_DIR/loss.log" --eval_file_name="$RUN_DIR/eval.log" "$@" > "$RUN_DIR/msrun.log" 2>&1 &
MSRUN=$!
trap 'kill $MSRUN 2>/dev/null' INT TERM
# Show rank 0's output as it comes (MindSpore's INFO/WARNING lines left out).
( for _ in $(seq 300); do [ -f log/worker_0.log ] && break; kill -0 $MSRUN 2>/dev/null || break; sleep 0.2; done
  [ -f log/worker_0.log ] && tail --pid=$MSRUN -n +1 -F log/worker_0.log 2>/dev/null \
    | grep --line-buffered -v -E '^\[(INFO|WARNING|DEBUG)\]' ) &
TAIL=$!
set +e
wait $MSRUN; RC=$?
wait $TAIL
set -e
if [ $RC -ne 0 ]; then
  echo "==== distributed training FAILED (msrun exit code $RC); logs in $RUN_DIR/log" >&2
  # msrun names the process that died first ("Worker process PID exit with exception. Error code: C");
  # each rank logs "rank R of N (...), pid PID" at start.
  DEAD=""
  while read -r pid code; do
    f="$(grep -l -E "^rank [0-9]+ of [0-9]+ .*pid $pid\$" log/worker_*.log 2>/dev/null | head -1)"
    if [ -n "$f" ]; then
      r="${f##*worker_}"; r="${r%.log}"; DEAD="$DEAD $r"
      echo "rank $r (pid $pid) exited with code $code ($( [ "$code" -lt 0 ] 2>/dev/null && echo "killed by signal $((-code))" || echo "error"))" >&2
    fi
  done < <(sed -n -E 's/.*Worker process ([0-9]+) exit with exception\. Error code: (-?[0-9]+).*/\1 \2/p' msrun.log)
  grep -h -E "timed out node list|abnormal" log/scheduler.log 2>/dev/null | sed 's/^/  /' | head -3 >&2
  for f in log/worker_*.log; do
    r="${f##*worker_}"; r="${r%.log}"
    if [[ " $DEAD " == *" $r "* ]] || grep -q -E "Traceback|train error|config error" "$f"; then
      echo "---- rank $r ($f):" >&2
      grep -v -E '^\[(INFO|WARNING|DEBUG)\]' "$f" | grep -v -E '^\s*$' | tail -15 | sed 's/^/  /' >&2
    fi
  done
  exit 1
fi
