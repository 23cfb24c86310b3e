#!/bin/bash
# run_distribute_train.sh on GPUs: DEVICE_NUM DATASET_PATH [train.py options]
exec bash "$(dirname "$0")/run_distribute_train.sh" GPU "$@"
