#!/bin/bash
# The CPU form of run_infer_310.sh: the same batch files and result layout, run by src/inference/runner.py
# (the mindspore 2.x wheel has no C++ inference API).
#   bash scripts/run_infer_cpu.sh MINDIR_PATH DATASET_PATH NEED_PREPROCESS [--key=value ...]
RUNNER=python DEVICE_TYPE=CPU exec bash "$(dirname "$0")/run_infer_310.sh" "$@"
