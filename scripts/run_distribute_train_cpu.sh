#!/bin/bash
# run_distribute_train.sh on this machine's CPU: WORKER_NUM DATASET_PATH [train.py options]
exec bash "$(dirname "$0")/run_distribute_train.sh" CPU "$@"
