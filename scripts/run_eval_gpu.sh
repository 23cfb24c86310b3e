#!/bin/bash
# Model-zoo name of run_eval.sh: DEVICE_ID DEVICE_TARGET DATASET_PATH CHECKPOINT_PATH [eval.py options]
exec bash "$(dirname "$0")/run_eval.sh" "$@"
