#!/bin/bash
# Single-device training on GPU (gpu_config.yaml).
#   bash scripts/run_standalone_train_gpu.sh DEVICE_ID DEVICE_TARGET DATASET_PATH [train.py options]
exec bash "$(dirname "$0")/run_standalone_train_ascend.sh" "$@"
