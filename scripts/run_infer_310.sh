#!/bin/bash
# Batch inference of an exported model over the test split: preprocess -> [convert] -> infer -> postprocess.
#   bash scripts/run_infer_310.sh MODEL_PATH DATASET_PATH NEED_PREPROCESS [DEVICE_ID] [--key=value ...]
#     MODEL_PATH       export.py output: a .mindir (dlrm.mindir, or dlrm_graph.mindir + dlrm_variables/
#                      when large), or a .onnx, which is first converted by ascend310_infer/out/converter
#                      into the model file MindSpore Lite's runtime builds from. Its record (MODEL_PATH.json,
#                      written by export.py) must fit DATASET_PATH: otherwise one line and exit code 2, first
#     DATASET_PATH     the MindRecord folder (metadata.json, test.mindrecord)
#     NEED_PREPROCESS  y: write the test split as batch files; n: reuse the ones already there
#     --key=value      config overrides for preprocess.py/postprocess.py (e.g. --test_batch_size=1024)
# Environment:
#   DEVICE_TYPE=Ascend310|Ascend|GPU|CPU (default Ascend310): the device of the C++ program. Without an Ascend/GPU
#     C++ API (MINDSPORE_PATH, or one in the mindspore package), and on CPU with a .mindir (MindSpore Lite 2.0.0
#     reads no MindSpore 2.x MINDIR), one line names what runs here (RUNNER=python, or an ONNX export), exit 2.
#   RUNNER=cpp (default: build ascend310_infer/ and run it) or python (src/inference/runner.py, a MINDIR only).
#   MINDSPORE_PATH: the MindSpore C++ API (include/api/ + lib/). With DEVICE_TYPE=CPU and nothing set,
#     MindSpore Lite 2.0.0 is fetched once into .whl/ (ascend310_infer/fetch_mindspore_lite.sh).
#   LOAD_MODE=auto|file|graph for the C++ program (see ascend310_infer/src/main.cc).
# Everything goes to output/infer_<device>_<id>/ (or INFER_DIR): preprocess_Result/{00_ids,01_dense,label}/ (no
# 01_dense/ for data without dense features),
# model/ (a converted model), result_Files/, time_Result/, acc.log and the steps' logs.
set -e
usage() { echo "usage: bash $0 MODEL_PATH DATASET_PATH NEED_PREPROCESS(y|n) [DEVICE_ID] [--key=value ...]" >&2; exit 2; }
[ $# -ge 3 ] || usage
MODEL_PATH=$1; DATASET_PATH=$2; NEED_PREPROCESS=$3; shift 3
DEVICE_ID=0
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then DEVICE_ID=$1; shift; fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/args.sh"
need_count DEVICE_ID "$DEVICE_ID" 0
case "$NEED_PREPROCESS" in y|Y|n|N) ;; *) echo "NEED_PREPROCESS must be y or n, got '$NEED_PREPROCESS'" >&2; exit 2;; esac
DEVICE_TYPE=${DEVICE_TYPE:-Ascend310}
RUNNER=${RUNNER:-cpp}
case "$DEVICE_TYPE" in Ascend310|Ascend|GPU|CPU) ;;
  *) echo "DEVICE_TYPE must be Ascend310, Ascend, GPU or CPU, got '$DEVICE_TYPE'" >&2; exit 2;; esac
CONFIG=$(config_for "$DEVICE_TYPE")
TARGET=${DEVICE_TYPE/Ascend310/Ascend}        # the MindSpore device target of preprocess/postprocess
case "$RUNNER" in cpp|python) ;; *) echo "RUNNER must be cpp or python, got '$RUNNER'" >&2; exit 2;; esac
[ -f "$MODEL_PATH" ] || { echo "MODEL_PATH '$MODEL_PATH' does not exist" >&2; exit 2; }
case "$MODEL_PATH" in
  *.mindir) ;;
  *.onnx) [ "$RUNNER" = cpp ] || { echo "RUNNER=python runs a .mindir; an .onnx goes through the C++ program (RUNNER=cpp)" >&2; exit 2; };;
  *) echo "MODEL_PATH '$MODEL_PATH' must be a .mindir or an .onnx written by export.py" >&2; exit 2;;
esac
need_dataset "$DATASET_PATH"

MODEL_PATH="$(realpath "$MODEL_PATH")"
DATASET_PATH="$(cd "$DATASET_PATH" && pwd)"
source "$ROOT/scripts/find_python.sh"
# the model must fit the dataset (its record beside it, written by export.py): one line and exit 2 before anything
(cd "$ROOT" && "$PY" -m src.inference.model_record check --model_path="$MODEL_PATH" --dataset_path="$DATASET_PATH") \
  || exit $?
# what the C++ program can run here, said in one line before anything runs (the C++ API search is build.sh's)
cpp_api_found() {
  local mod dir
  for mod in mindspore_lite mindspore; do
    dir="$("$PY" -c "import os, $mod; print(os.path.dirname($mod.__file__))" 2>/dev/null || true)"
    [ -n "$dir" ] && [ -f "$dir/include/api/model.h" ] && return 0
  done
  return 1
}
if [ "$RUNNER" = cpp ] && [ -z "${MINDSPORE_PATH:-}" ]; then
  if [ "$DEVICE_TYPE" = CPU ] && [[ "$MODEL_PATH" == *.mindir ]]; then
    echo "DEVICE_TYPE=CPU runs the C++ program on MindSpore Lite 2.0.0, which cannot read this MindSpore 2.x .mindir" \
         "(it stops at 'maximum mind ir version: 1'): RUNNER=python DEVICE_TYPE=CPU bash $0 ... runs it with the" \
         "Python runner, or export.py --file_format=ONNX gives a model the C++ program runs here" >&2
    exit 2
  fi
  if [ "$DEVICE_TYPE" != CPU ] && ! cpp_api_found; then
    echo "DEVICE_TYPE=$DEVICE_TYPE needs the MindSpore C++ API of an Ascend/GPU install (set MINDSPORE_PATH), and" \
         "this machine has none: on CPU, RUNNER=python DEVICE_TYPE=CPU bash $0 ... runs a .mindir with the Python" \
         "runner, or DEVICE_TYPE=CPU with an ONNX export (export.py --file_format=ONNX) runs the C++ program" >&2
    exit 2
  fi
fi
RUN_DIR="${INFER_DIR:-$ROOT/output/infer_$(echo "$DEVICE_TYPE" | tr A-Z a-z)_$DEVICE_ID}"
mkdir -p "$RUN_DIR"; RUN_DIR="$(cd "$RUN_DIR" && pwd)"; cd "$RUN_DIR"
DATA="$RUN_DIR/preprocess_Result"
COMMON=(--config_path="$ROOT/$CONFIG" --device_target="$TARGET" --dataset_path="$DATASET_PATH" --model_path="$MODEL_PATH")

if [[ "$NEED_PREPROCESS" == [yY] ]]; then
  "$PY" "$ROOT/preprocess.py" "${COMMON[@]}" --infer_data_path="$DATA" "$@" 2>&1 | tee preprocess.log
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "preprocess failed, see $RUN_DIR/preprocess.log" >&2; exit 1; }
elif [ ! -f "$DATA/manifest.json" ]; then
  echo "NEED_PREPROCESS=n but $DATA has no batch files (manifest.json); run with y first" >&2; exit 1
fi

# build_cpp: MINDSPORE_PATH (fetching MindSpore Lite for CPU when unset), then ascend310_infer/out/{main,converter}.
build_cpp() {
  if [ -z "${MINDSPORE_PATH:-}" ] && [ "$DEVICE_TYPE" = CPU ]; then
    MINDSPORE_PATH="$(PYTHON="$PY" bash "$ROOT/ascend310_infer/fetch_mindspore_lite.sh" 2> fetch.log)" || {
      cat fetch.log >&2
      echo "could not fetch MindSpore Lite 2.0.0 (the C++ runtime for CPU); set MINDSPORE_PATH to a MindSpore Lite" \
           "package with include/api/ and lib/, or run the Python runner: bash scripts/run_infer_cpu.sh" >&2
      exit 1; }
    export MINDSPORE_PATH
  fi
  PYTHON="$PY" bash "$ROOT/ascend310_infer/build.sh" > build.log 2>&1 || {
    cat build.log >&2; echo "build failed, see $RUN_DIR/build.log" >&2; exit 1; }
}

# clear_ours DIR GLOB: remove the previous run's DIR when every entry in it matches GLOB (what the
# runners write there); refuse a folder holding anything else, naming it.
clear_ours() {
  [ -e "$1" ] || return 0
  local f
  for f in "$1"/* "$1"/.[!.]*; do
    [ -e "$f" ] || continue
    [[ -f "$f" && "$(basename "$f")" == $2 ]] || {
      echo "'$RUN_DIR/$1' holds '$(basename "$f")', which no runner wrote; move it away or set INFER_DIR to another folder" >&2
      exit 1; }
  done
  rm -rf "$1"
}
clear_ours result_Files 'batch_*_0.bin*'          # results, or a killed write's batch_N_0.bin.tmp-PID
clear_ours time_Result 'test_perform_static.txt*'
if [ "$RUNNER" = cpp ]; then
  build_cpp
  if [[ "$MODEL_PATH" == *.onnx ]]; then
    [ -x "$ROOT/ascend310_infer/out/converter" ] || {
      echo "an .onnx needs ascend310_infer/out/converter, which is built only against MindSpore Lite (its" \
           "lib/libmindspore_converter.so); MINDSPORE_PATH=$MINDSPORE_PATH has none" >&2; exit 1; }
    mkdir -p model
    LITE_MODEL="$RUN_DIR/model/$(basename "${MODEL_PATH%.onnx}")_lite.mindir"
    "$ROOT/ascend310_infer/out/converter" --onnx_path="$MODEL_PATH" --output_path="$LITE_MODEL" > convert.log 2>&1 || {
      cat convert.log >&2; echo "conversion failed, see $RUN_DIR/convert.log" >&2; exit 1; }
    tail -1 convert.log
    MODEL_PATH="$(tail -1 convert.log)"; MODEL_PATH="${MODEL_PATH##* -> }"   # X.mindir, or X_graph.mindir when large
  fi
  DENSE=(); [ -d "$DATA/01_dense" ] && DENSE=(--input1_path="$DATA/01_dense")   # none without dense features
  "$ROOT/ascend310_infer/out/main" --mindir_path="$MODEL_PATH" --input0_path="$DATA/00_ids" "${DENSE[@]}" \
    --result_path=./result_Files --time_path=./time_Result \
    --device_type="$DEVICE_TYPE" --device_id="$DEVICE_ID" --load_mode="${LOAD_MODE:-auto}" > infer.log 2>&1 || {
    cat infer.log >&2; echo "inference failed, see $RUN_DIR/infer.log" >&2; exit 1; }
else
  PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m src.inference.runner --mindir_path="$MODEL_PATH" --input_path="$DATA" \
    --result_path=./result_Files --time_path=./time_Result --device_target="$TARGET" > infer.log 2>&1 || {
    cat infer.log >&2; echo "inference failed, see $RUN_DIR/infer.log" >&2; exit 1; }
fi
cat infer.log

"$PY" "$ROOT/postprocess.py" "${COMMON[@]}" --result_path=./result_Files --label_path="$DATA/label" "$@" 2>&1 | tee acc.log
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "postprocess failed, see $RUN_DIR/acc.log" >&2; exit 1; }
echo "results in $RUN_DIR (acc.log, time_Result/, result_Files/)"
