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
# The job succeeded when every rank wrote RUN_DIR/ranks/rank_<k>.json with status ok as its last act
# (src/utils/rank_report.py): then this exits 0 even if MindSpore's teardown afterwards makes msrun complain
# (printed as a warning). A rank that fails or never reports makes it exit 1, naming the rank and showing the
# end of its log; the other ranks are stopped at once.
# Runs the python on PATH that has MindSpore (or .venv's): see scripts/find_python.sh. Nothing is installed.
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
source "$ROOT/scripts/find_python.sh"
need_device "$TARGET"
RUN_DIR="${RUN_DIR:-$ROOT/output/train_distribute_$(echo "$TARGET" | tr A-Z a-z)}"
mkdir -p "$RUN_DIR"
RUN_DIR="$(cd "$RUN_DIR" && pwd)"
cd "$RUN_DIR"
export DLRM_RESULT_DIR="$RUN_DIR/ranks"       # each rank's result file (src/utils/rank_report.py)
mkdir -p "$DLRM_RESULT_DIR"
rm -f "$DLRM_RESULT_DIR"/rank_*.json "$DLRM_RESULT_DIR"/rank_*.json.tmp-*     # this launcher's own earlier reports
TRAIN_ARGS=(--config_path="$ROOT/$CONFIG" --device_target="$TARGET" --parallel_mode="${PARALLEL_MODE:-hybrid_parallel}"
  --dataset_path="$DATASET_PATH" --ckpt_path="$RUN_DIR/ckpt" --loss_file_name="$RUN_DIR/loss.log"
  --eval_file_name="$RUN_DIR/eval.log" "$@")

# log_tail FILE: the last lines of a rank's log without MindSpore's INFO/WARNING lines.
log_tail() { grep -v -E '^\[(INFO|WARNING|DEBUG)\]' "$1" 2>/dev/null | grep -v -E '^\s*$' | tail -15 | sed 's/^/  /' >&2; }

# reported_ok FIRST COUNT: true when ranks FIRST .. FIRST+COUNT-1 all reported ok (the authoritative check).
reported_ok() { (cd "$ROOT" && "$PY" -m src.utils.rank_report check "$DLRM_RESULT_DIR" "$2" --first "$1" > "$RUN_DIR/ranks/check.txt"); }

# all_done FIRST COUNT: every rank reported ok and its process is gone (a cheap test, polled).
all_done() {
  local r f pid
  for ((r = $1; r < $1 + $2; r++)); do
    f="$DLRM_RESULT_DIR/rank_$r.json"
    grep -q '"status": "ok"' "$f" 2>/dev/null || return 1
    pid=$(grep -o '"pid": [0-9]*' "$f" | grep -o '[0-9]*$')
    ! kill -0 "$pid" 2>/dev/null || return 1
  done
}

# died_unreported: msrun saw a rank exit non-zero ("Worker process PID exit with exception") that had not reported
# ok (one that crashed in MindSpore's teardown after its report does not stop the job).
died_unreported() {
  local pid f
  for pid in $(sed -n -E 's/.*Worker process ([0-9]+) exit with exception.*/\1/p' msrun.log 2>/dev/null); do
    f=$(grep -l -s "\"pid\": $pid," "$DLRM_RESULT_DIR"/rank_*.json | head -1)
    [ -n "$f" ] && grep -q '"status": "ok"' "$f" || return 0
  done
  return 1
}

# finish FIRST COUNT RC WHAT: the job's exit. Every rank reported ok: exit 0 (a non-zero RC from WHAT is MindSpore's
# teardown, printed as a warning). Otherwise name the ranks that did not and exit 1 (REPORT shows their logs).
finish() {
  if reported_ok "$1" "$2"; then
    if [ "$3" -ne 0 ]; then
      echo "warning: $4 exited with code $3 after every rank had reported success; the job's outputs are complete" \
           "(MindSpore's teardown: $(teardown_complaint))" >&2
    fi
    exit 0
  fi
  echo "==== distributed training FAILED; logs in $RUN_DIR" >&2
  sed 's/^/  /' "$RUN_DIR/ranks/check.txt" >&2
  "$REPORT"
  exit 1
}

teardown_complaint() {
  { grep -h -o -E "The node: [0-9]+ is timed out|Worker process [0-9]+ exit with exception. Error code: -?[0-9]+" \
      msrun.log log/scheduler.log 2>/dev/null || echo "no message"; } | sort -u | head -3 | tr '\n' ';' | sed 's/;$//'
}

# watch_ranks FIRST: wait for the rank processes in PIDS (their ranks in RANK_OF). A rank that exits non-zero
# without having reported ok stops the others (and EXTRA_PIDS) at once.
watch_ranks() {
  local LEFT=${#PIDS[@]} DONE RC WORST=0
  set +e
  while [ $LEFT -gt 0 ]; do
    wait -n -p DONE "${PIDS[@]}"; RC=$?
    LEFT=$((LEFT - 1))
    if [ $RC -ne 0 ]; then
      WORST=$RC
      if ! grep -q '"status": "ok"' "$DLRM_RESULT_DIR/rank_${RANK_OF[$DONE]}.json" 2>/dev/null; then
        kill "${PIDS[@]}" $EXTRA_PIDS 2>/dev/null
        wait 2>/dev/null
        break
      fi
    fi
  done
  set -e
  WATCH_RC=$WORST
}
PIDS=(); EXTRA_PIDS=""; declare -A RANK_OF

report_logs_rank_table() {
  local f r
  for f in log*/train.log; do
    r="${f%%/*}"; r="${r#log}"
    grep -q '"status": "ok"' "$DLRM_RESULT_DIR/rank_$r.json" 2>/dev/null && continue
    echo "---- rank $r ($RUN_DIR/$f):" >&2
    log_tail "$f"
  done
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
  watch_ranks
  grep -v -E '^\[(INFO|WARNING|DEBUG)\]' "log$FIRST/train.log" | tail -5
  REPORT=report_logs_rank_table
  finish "$FIRST" "$NUM" "$WATCH_RC" "a rank"
}

# report_msrun_failure: name the rank(s) msrun saw die (it logs "Worker process PID exit with exception. Error code:
# C"; each rank logs "rank R of N (...), pid PID" at start) and show the tails of the logs of every rank that did
# not report ok.
report_msrun_failure() {
  local pid code f r
  while read -r pid code; do
    f="$(grep -l -E "^rank [0-9]+ of [0-9]+ .*pid $pid\$" log/worker_*.log 2>/dev/null | head -1)"
    if [ -n "$f" ]; then
      r="${f##*worker_}"; r="${r%.log}"
      echo "rank $r (pid $pid) exited with code $code ($( [ "$code" -lt 0 ] 2>/dev/null && echo "killed by signal $((-code))" || echo "error"))" >&2
    fi
  done < <(sed -n -E 's/.*Worker process ([0-9]+) exit with exception\. Error code: (-?[0-9]+).*/\1 \2/p' msrun.log)
  grep -h -E "timed out node list|abnormal" log/scheduler.log 2>/dev/null | sed 's/^/  /' | head -3 >&2
  for f in log/worker_*.log; do
    r="${f##*worker_}"; r="${r%.log}"
    grep -q '"status": "ok"' "$DLRM_RESULT_DIR/rank_$r.json" 2>/dev/null && continue
    echo "---- rank $r ($f):" >&2
    log_tail "$f"
  done
}

launch_msrun() {
  rm -f log/worker_*.log log/scheduler.log     # msrun's logs of the previous run here (they would be appended to)
  local PORT="${MASTER_PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
  local MSRUN_BIN; MSRUN_BIN="$(dirname "$PY")/msrun"; [ -x "$MSRUN_BIN" ] || MSRUN_BIN=msrun
  echo "training on $NUM $TARGET ranks (${PARALLEL_MODE:-hybrid_parallel}), logs in $RUN_DIR/log/worker_<rank>.log"
  # its own process group, so that stopping it stops its scheduler and ranks too
  setsid "$MSRUN_BIN" --worker_num="$NUM" --local_worker_num="$NUM" --master_addr=127.0.0.1 --master_port="$PORT" \
    --join=True --log_dir="$RUN_DIR/log" python "$ROOT/train.py" "${TRAIN_ARGS[@]}" > "$RUN_DIR/msrun.log" 2>&1 &
  local MSRUN=$! TAIL RC=0 WHAT=msrun STOPPED=0
  trap 'kill -TERM -- -$MSRUN 2>/dev/null' INT TERM
  # Show rank 0's output as it comes (MindSpore's INFO/WARNING lines left out).
  ( for _ in $(seq 300); do [ -f log/worker_0.log ] && break; kill -0 $MSRUN 2>/dev/null || break; sleep 0.2; done
    [ -f log/worker_0.log ] && tail --pid=$MSRUN -n +1 -F log/worker_0.log 2>/dev/null \
      | grep --line-buffered -v -E '^\[(INFO|WARNING|DEBUG)\]' ) &
  TAIL=$!
  # Poll instead of waiting for msrun alone: a rank that dies stops the job at once (msrun would wait for the
  # scheduler's heartbeat timeout), and once every rank has reported ok and left, msrun's scheduler (which
  # checks every 5 s whether the ranks have left) is not waited for.
  while kill -0 $MSRUN 2>/dev/null; do
    if died_unreported; then
      sleep 1; kill -TERM -- -$MSRUN 2>/dev/null; WHAT="a rank"; break
    fi
    if all_done 0 "$NUM"; then
      for _ in 1 2 3 4; do kill -0 $MSRUN 2>/dev/null || break; sleep 0.5; done
      kill -TERM -- -$MSRUN 2>/dev/null || true
      STOPPED=1
      break
    fi
    sleep 0.5
  done
  set +e
  wait $MSRUN; RC=$?
  [ "$STOPPED" = 0 ] || RC=0                            # stopped by us after every rank had finished
  grep -q "exit with exception" msrun.log 2>/dev/null && [ "$RC" = 0 ] && RC=1 && WHAT="a rank"   # after its report
  kill $TAIL 2>/dev/null; wait $TAIL 2>/dev/null
  set -e
  REPORT=report_msrun_failure
  finish 0 "$NUM" "$RC" "$WHAT"
}

# report_node_failure: name the rank(s) MindSpore's scheduler lost when that is why (a rank or node that died
# elsewhere), and show the logs of this node's ranks that did not report ok.
report_node_failure() {
  local LOST r f; LOST=$(lost_ranks)
  [ -z "$LOST" ] || echo "rank(s) ${LOST}stopped answering (MindSpore's scheduler: 'The node: ${LOST% } is timed out';" \
                         "see that node's log)" >&2
  for ((r = NODE_RANK * NUM; r < NODE_RANK * NUM + NUM; r++)); do
    grep -q '"status": "ok"' "$DLRM_RESULT_DIR/rank_$r.json" 2>/dev/null && continue
    echo "---- rank $r ($RUN_DIR/log/worker_$r.log):" >&2
    log_tail "log/worker_$r.log"
  done
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
  watch_ranks
  if [ -n "$EXTRA_PIDS" ]; then                 # node 0: its scheduler leaves when every node's ranks have
    set +e; wait $EXTRA_PIDS; set -e            # (or it stops them when one is lost)
  fi
  grep -v -E '^\[(INFO|WARNING|DEBUG)\]' "log/worker_$((NODE_RANK * NUM)).log" | tail -5
  REPORT=report_node_failure
  finish $((NODE_RANK * NUM)) "$NUM" "$WATCH_RC" "a rank"
}

# lost_ranks: the ranks MindSpore's scheduler lost (no heartbeat: a rank or node that died elsewhere),
# from its log on node 0 ("The node: 1 is timed out"); node ids are global ranks here.
lost_ranks() {
  grep -h -o -E "The node: [0-9]+ is timed out" log/scheduler.log 2>/dev/null | grep -o -E "[0-9]+" | sort -un | tr '\n' ' '
}

if [ "$TARGET" = Ascend ]; then launch_rank_table
elif [ "$NODE_NUM" -gt 1 ]; then launch_nodes
else launch_msrun; fi
