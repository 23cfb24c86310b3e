#!/bin/bash
# Batch inference of an exported MINDIR over the test split: preprocess -> build -> infer -> postprocess.
#   bash scripts/run_infer_310.sh MINDIR_PATH DATASET_PATH NEED_PREPROCESS [DEVICE_ID] [--key=value ...]
#     MINDIR_PATH      export.py output (dlrm.mindir, or dlrm_graph.mindir + dlrm_variables/ when large)
#     DATASET_PATH     the MindRecord folder (metadata.json, test.mindrecord)
#     NEED_PREPROCESS  y: write the test split as batch files; n: reuse the ones already there
#     --key=value      config overrides for preprocess.py/postprocess.py (e.g. --test_batch_size=1024)
# Environment: DEVICE_TYPE=Ascend310|Ascend|GPU|CPU (default Ascend310) for the C++ program;
#   RUNNER=cpp (default: build ascend310_infer/ and run it) or python (src/infer_runner.py, any machine);
#   MINDSPORE_PATH for build.sh. Everything goes to output/infer_<device>_<id>/:
#   preprocess_Result/{00_ids,01_dense,label}/, result_Files/, time_Result/, *.log.
set -e
usage() { echo "usage: bash $0 MINDIR_PATH DATASET_PATH NEED_PREPROCESS(y|n) [DEVICE_ID] [--key=value ...]" >&2; exit 2; }
[ $# -ge 3 ] || usage
MINDIR_PATH=$1; DATASET_PATH=$2; NEED_PREPROCESS=$3; shift 3
DEVICE_ID=0
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then DEVICE_ID=$1; shift; fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/args.sh"
need_count DEVICE_ID "$DEVICE_ID" 0
case "$NEED_PREPROCESS" in y|Y|n|N) ;; *) echo "NEED_PREPROCESS must be y or n, got '$NEED_PREPROCESS'" >&2; exit 2;; esac
DEVICE_TYPE=${DEVICE_TYPE:-Ascend310}
RUNNER=${RUNNER:-cpp}
case "$DEVICE_TYPE" in Ascend310|Ascend) CONFIG=npu_config.yaml; TARGET=Ascend;; GPU) CONFIG=gpu_config.yaml; TARGET=GPU;;
  CPU) CONFIG=cpu_config.yaml; TARGET=CPU;;
  *) echo "DEVICE_TYPE must be Ascend310, Ascend, GPU or CPU, got '$DEVICE_TYPE'" >&2; exit 2;; esac
case "$RUNNER" in cpp|python) ;; *) echo "RUNNER must be cpp or python, got '$RUNNER'" >&2; exit 2;; esac
[ -f "$MINDIR_PATH" ] || { echo "MINDIR_PATH '$MINDIR_PATH' does not exist" >&2; exit 2; }
need_dataset "$DATASET_PATH"

MINDIR_PATH="$(realpath "$MINDIR_PATH")"
DATASET_PATH="$(cd "$DATASET_PATH" && pwd)"
source "$ROOT/scripts/setup_env.sh"
RUN_DIR="${INFER_DIR:-$ROOT/output/infer_$(echo "$DEVICE_TYPE" | tr A-Z a-z)_$DEVICE_ID}"
mkdir -p "$RUN_DIR"; cd "$RUN_DIR"
DATA="$RUN_DIR/preprocess_Result"
COMMON=(--config_path="$ROOT/$CONFIG" --device_target="$TARGET" --dataset_path="$DATASET_PATH")

if [[ "$NEED_PREPROCESS" == [yY] ]]; then
  "$PY" "$ROOT/preprocess.py" "${COMMON[@]}" --infer_data_path="$DATA" "$@" 2>&1 | tee preprocess.log
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "preprocess failed, see $RUN_DIR/preprocess.log" >&2; exit 1; }
elif [ ! -f "$DATA/manifest.json" ]; then
  echo "NEED_PREPROCESS=n but $DATA has no batch files (manifest.json); run with y first" >&2; exit 1
fi

rm -rf result_Files time_Result
if [ "$RUNNER" = cpp ]; then
  bash "$ROOT/ascend310_infer/build.sh" > build.log 2>&1 || { cat build.log >&2; echo "build failed, see $RUN_DIR/build.log" >&2; exit 1; }
  "$ROOT/ascend310_infer/out/main" --mindir_path="$MINDIR_PATH" --input0_path="$DATA/00_ids" \
    --input1_path="$DATA/01_dense" --result_path=./result_Files --time_path=./time_Result \
    --device_type="$DEVICE_TYPE" --device_id="$DEVICE_ID" > infer.log 2>&1 || { cat infer.log >&2; echo "inference failed, see $RUN_DIR/infer.log" >&2; exit 1; }
else
  PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m src.inference.runner --mindir_path="$MINDIR_PATH" --input_path="$DATA" --result_path=./result_Files \
    --time_path=./time_Result --device_target="$TARGET" > infer.log 2>&1 || { cat infer.log >&2; echo "inference failed, see $RUN_DIR/infer.log" >&2; exit 1; }
fi
cat infer.log

"$PY" "$ROOT/postprocess.py" "${COMMON[@]}" --result_path=./result_Files --label_path="$DATA/label" "$@" 2>&1 | tee acc.log
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "postprocess failed, see $RUN_DIR/acc.log" >&2; exit 1; }
echo "results in $RUN_DIR (acc.log, time_Result/, result_Files/)"
