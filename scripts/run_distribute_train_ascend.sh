#!/bin/bash
# run_distribute_train.sh on Ascend with an HCCL rank table: DEVICE_NUM DATASET_PATH RANK_TABLE_FILE [train.py options]
exec bash "$(dirname "$0")/run_distribute_train.sh" Ascend "$@"
