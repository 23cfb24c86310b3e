#!/bin/bash
# Evaluate a checkpoint on the test split on GPU (same arguments as run_eval.sh).
#   bash scripts/run_eval_gpu.sh DEVICE_ID DEVICE_TARGET DATASET_PATH CHECKPOINT_PATH [eval.py options]
exec bash "$(dirname "$0")/run_eval.sh" "$@"
