#!/bin/bash
# Distributed training on this machine's CPU: msrun on 127.0.0.1, WORKER_NUM processes.
#   bash scripts/run_distribute_train_cpu.sh WORKER_NUM DATASET_PATH [train.py options]
DEVICE_TARGET=CPU exec bash "$(dirname "$0")/run_distribute_train_gpu.sh" "$@"
