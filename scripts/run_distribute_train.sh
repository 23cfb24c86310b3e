#!/bin/bash
# Distributed training, one process per device (or per CPU worker).
#   bash scripts/run_distribute_train.sh DEVICE_TARGET NUM DATASET_PATH [RANK_TABLE_FILE] [train.py options]
#     CPU, GPU  msrun starts NUM processes (CPU: MindSpore's mccl on 127.0.0.1; GPU: NCCL).
#               MASTER_PORT picks the port (default: a free one).
#               Several machines: run this on each with NUM = its worker count and NODE_NUM (machines),
#               NODE_RANK (0 .. NODE_NUM-1), MASTER_ADDR (node 0's address) and MASTER_PORT (the same on
#               all); node k's ranks are k*NUM .. k*NUM+NUM-1. This uses MindSpore's own cluster start
#               (node 0 runs its scheduler: MS_ROLE=MS_SCHED; every rank is MS_ROLE=MS_WORKER with
#               MS_NODE_ID=its rank), as msrun does; checkpoints need a --ckpt_path all nodes share.
#     Ascend    RANK_TABLE_FILE (an HCCL rank table) is required. This server's NUM devices start with the
#               device and global rank ids the table gives them (RANK_SIZE = all devices of all servers),
#               in RUN_DIR/log<rank>/train.log. Several servers: run this on each with the same table;
#               a server is found by its address, or by SERVER_ID (its server_id in the table).
# batch_size is per rank. PARALLEL_MODE=hybrid_parallel (default: tables placed by --sharding_plan) or
# data_parallel; a --parallel_mode=... option wins. RUN_DIR defaults to output/train_distribute_<target>/.
# loss.log, eval.log and the merged checkpoint (ckpt/) come from rank 0, shards in ckpt/rank_<k>/.
# If a rank fails, the others are stopped and the job exits 1 naming that rank, with its log's tail.
# The model-zoo names run_distribute_train_{ascend,gpu,cpu}.sh call this with their target.
set -e
if [ $# -lt 3 ]; then
  echo "usage: bash $0 DEVICE_TARGET NUM DATASET_PATH [RANK_TABLE_FILE (Ascend)] [--key=value ...]" >&2; exit 2
fi
TARGET=$1; NUM=$2; DATASET_PATH=$3; shift 3
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/args.sh"
CONFIG=$(config_for "$TARGET")
need_count "the number of ranks" "$NUM" 1
if [ "$TARGET" = Ascend ]; then
  RANK_TABLE_FILE=$1
  [ -n "$RANK_TABLE_FILE" ] && [[ "$RANK_TABLE_FILE" != --* ]] || {
    echo "Ascend needs an HCCL rank table: bash $0 Ascend DEVICE_NUM DATASET_PATH RANK_TABLE_FILE" >&2; exit 2; }
  shift
  [ -f "$RANK_TABLE_FILE" ] || { echo "RANK_TABLE_FILE '$RANK_TABLE_FILE' does not exist" >&2; exit 2; }
  export RANK_TABLE_FILE="$(realpath "$RANK_TABLE_FILE")"
fi
NODE_NUM="${NODE_NUM:-1}"; NODE_RANK="${NODE_RANK:-0}"
need_count NODE_NUM "$NODE_NUM" 1
need_count NODE_RANK "$NODE_RANK" 0
[ "$NODE_RANK" -lt "$NODE_NUM" ] || { echo "NODE_RANK must be in [0, NODE_NUM=$NODE_NUM), got $NODE_RANK" >&2; exit 2; }
if [ "$NODE_NUM" -gt 1 ]; then
  [ "$TARGET" != Ascend ] || { echo "Ascend: several servers come from one rank table; NODE_NUM is for CPU/GPU" >&2; exit 2; }
  [ -n "$MASTER_ADDR" ] && [ -n "$MASTER_PORT" ] || {
    echo "NODE_NUM=$NODE_NUM needs MASTER_ADDR (node 0's address) and MASTER_PORT, the same on every node" >&2; exit 2; }
  need_count MASTER_PORT "$MASTER_PORT" 1
fi
export DLRM_LOCAL_RANKS=$NUM                 # memory_budget_gb=0 shares this machine's memory among them
need_dataset "$DATASET_PATH"
DATASET_PATH="$(cd "$DATASET_PATH" && pwd)"
source "$ROOT/scripts/setup_env.sh"          # the venv's bin on PATH: msrun starts plain `python`
RUN_DIR="${RUN_DIR:-$ROOT/output/train_distribute_$(echo "$TARGET" | tr A-Z a-z)}"
mkdir -p "$RUN_DIR"
RUN_DIR="$(cd "$RUN_DIR" && pwd)"
cd "$RUN_DIR"
TRAIN_ARGS=(--config_path="$ROOT/$CONFIG" --device_target="$TARGET" --parallel_mode="${PARALLEL_MODE:-hybrid_parallel}"
  --dataset_path="$DATASET_PATH" --ckpt_path="$RUN_DIR/ckpt" --loss_file_name="$RUN_DIR/loss.log"
  --eval_file_name="$RUN_DIR/eval.log" "$@")

# log_tail FILE: the last lines of a rank's log without MindSpore's INFO/WARNING lines.
log_tail() { grep -v -E '^\[(INFO|WARNING|DEBUG)\]' "$1" | grep -v -E '^\s*$' | tail -15 | sed 's/^/  /' >&2; }

# watch_ranks REPORT: wait for the processes in PIDS (their ranks in RANK_OF). When one fails, call
# `REPORT RANK EXIT_CODE`, stop the others (and EXTRA_PIDS) and exit 1.
watch_ranks() {
  local LEFT=${#PIDS[@]} DONE RC
  set +e
  while [ $LEFT -gt 0 ]; do
    wait -n -p DONE "${PIDS[@]}"; RC=$?
    LEFT=$((LEFT - 1))
    if [ $RC -ne 0 ]; then
      "$1" "${RANK_OF[$DONE]}" "$RC"
      kill "${PIDS[@]}" $EXTRA_PIDS 2>/dev/null
      wait 2>/dev/null
      exit 1
    fi
  done
  set -e
}
PIDS=(); EXTRA_PIDS=""; declare -A RANK_OF

report_rank_table() {
  echo "==== rank $1 failed (exit code $2); stopping the other ranks. $RUN_DIR/log$1/train.log ends with:" >&2
  log_tail "log$1/train.log"
}

launch_rank_table() {
  local PLACEMENT d r FIRST=""
  PLACEMENT=$(cd "$ROOT" && "$PY" -m src.utils.rank_table "$RANK_TABLE_FILE" "$NUM" ${SERVER_ID:+"$SERVER_ID"}) || exit 2
  export RANK_SIZE=$(echo "$PLACEMENT" | head -1)
  while read -r d r; do
    mkdir -p "log$r"
    ( cd "log$r" && DEVICE_ID=$d RANK_ID=$r exec "$PY" "$ROOT/train.py" "${TRAIN_ARGS[@]}" > train.log 2>&1 ) &
    PIDS+=($!); RANK_OF[$!]=$r; FIRST=${FIRST:-$r}
  done < <(echo "$PLACEMENT" | tail -n +2)
  echo "started ranks $(echo "$PLACEMENT" | tail -n +2 | awk '{printf "%s%s (device %s)", s, $2, $1; s=", "}')" \
       "of $RANK_SIZE, logs in $RUN_DIR/log<rank>/train.log"
  trap 'kill "${PIDS[@]}" 2>/dev/null' INT TERM
  watch_ranks report_rank_table
  grep -v -E '^\[(INFO|WARNING|DEBUG)\]' "log$FIRST/train.log" | tail -5
}

# report_msrun_failure: name the rank(s) that died (msrun logs "Worker process PID exit with exception.
# Error code: C"; each rank logs "rank R of N (...), pid PID" at start) and show their logs' tails.
report_msrun_failure() {
  local DEAD="" pid code f r
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
      log_tail "$f"
    fi
  done
}

launch_msrun() {
  rm -f log/worker_*.log log/scheduler.log     # msrun's logs of the previous run here (they would be appended to)
  local PORT="${MASTER_PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
  echo "training on $NUM $TARGET ranks (${PARALLEL_MODE:-hybrid_parallel}), logs in $RUN_DIR/log/worker_<rank>.log"
  msrun --worker_num="$NUM" --local_worker_num="$NUM" --master_addr=127.0.0.1 --master_port="$PORT" --join=True \
    --log_dir="$RUN_DIR/log" python "$ROOT/train.py" "${TRAIN_ARGS[@]}" > "$RUN_DIR/msrun.log" 2>&1 &
  local MSRUN=$! TAIL RC
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
    report_msrun_failure
    exit 1
  fi
}

# report_node_failure RANK CODE: a rank of this node failed; name the rank(s) MindSpore's scheduler lost
# when that is why (a rank or node that died elsewhere), and show this rank's log.
report_node_failure() {
  local LOST; LOST=$(lost_ranks)
  if [ -n "$LOST" ] && [[ " $LOST " != *" $1 "* ]]; then
    echo "==== distributed training FAILED: rank(s) ${LOST}stopped answering (MindSpore's scheduler: 'The" \
         "node: ${LOST% } is timed out'; see that node's log); rank $1 here stopped with it (exit code $2)" >&2
  else
    echo "==== rank $1 (node $NODE_RANK) failed (exit code $2); stopping this node's ranks." >&2
  fi
  echo "---- rank $1 ($RUN_DIR/log/worker_$1.log):" >&2
  log_tail "log/worker_$1.log"
}

# launch_nodes: one node of a multi-node CPU/GPU job, by MindSpore's environment-variable cluster start.
launch_nodes() {
  local TOTAL=$((NUM * NODE_NUM)) i r
  mkdir -p log
  rm -f log/worker_*.log log/scheduler.log
  export MS_WORKER_NUM=$TOTAL MS_SCHED_HOST="$MASTER_ADDR" MS_SCHED_PORT="$MASTER_PORT"
  if [ "$NODE_RANK" = 0 ]; then
    MS_ROLE=MS_SCHED "$PY" "$ROOT/train.py" "${TRAIN_ARGS[@]}" > log/scheduler.log 2>&1 &
    EXTRA_PIDS=$!
  fi
  for ((i = 0; i < NUM; i++)); do
    r=$((NODE_RANK * NUM + i))
    MS_ROLE=MS_WORKER MS_NODE_ID=$r "$PY" "$ROOT/train.py" "${TRAIN_ARGS[@]}" > "log/worker_$r.log" 2>&1 &
    PIDS+=($!); RANK_OF[$!]=$r
  done
  echo "node $NODE_RANK of $NODE_NUM: ranks $((NODE_RANK * NUM))..$((NODE_RANK * NUM + NUM - 1)) of $TOTAL" \
       "($TARGET, ${PARALLEL_MODE:-hybrid_parallel}), scheduler $MASTER_ADDR:$MASTER_PORT, logs in $RUN_DIR/log"
  trap 'kill "${PIDS[@]}" $EXTRA_PIDS 2>/dev/null' INT TERM
  watch_ranks report_node_failure
  [ -z "$EXTRA_PIDS" ] || wait $EXTRA_PIDS
  grep -v -E '^\[(INFO|WARNING|DEBUG)\]' "log/worker_$((NODE_RANK * NUM)).log" | tail -5
}

# lost_ranks: the ranks MindSpore's scheduler lost (no heartbeat: a rank or node that died elsewhere),
# from its log on node 0 ("The node: 1 is timed out"); node ids are global ranks here.
lost_ranks() {
  grep -h -o -E "The node: [0-9]+ is timed out" log/scheduler.log 2>/dev/null | grep -o -E "[0-9]+" | sort -un | tr '\n' ' '
}

if [ "$TARGET" = Ascend ]; then launch_rank_table
elif [ "$NODE_NUM" -gt 1 ]; then launch_nodes
else launch_msrun; fi
