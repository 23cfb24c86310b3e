#!/bin/bash
# Single-process training on CPU: run_standalone_train.sh 0 CPU DATASET_PATH [train.py options]
exec bash "$(dirname "$0")/run_standalone_train.sh" 0 CPU "$@"
