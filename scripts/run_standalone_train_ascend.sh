#!/bin/bash
# Model-zoo name of run_standalone_train.sh: DEVICE_ID DEVICE_TARGET DATASET_PATH [train.py options]
exec bash "$(dirname "$0")/run_standalone_train.sh" "$@"
