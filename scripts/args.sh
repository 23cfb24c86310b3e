#!/bin/bash
# Argument checks shared by the launch scripts (sourced). Each prints what was expected and exits 2.

# need_count NAME VALUE MIN: VALUE is an integer >= MIN (0 or 1).
need_count() {
  case "$2" in ''|*[!0-9]*) ;; *) [ "$2" -ge "$3" ] && return 0;; esac
  if [ "$3" -ge 1 ]; then
    echo "$1 must be a positive integer, got '$2'" >&2
  else
    echo "$1 must be a non-negative integer, got '$2'" >&2
  fi
  exit 2
}

# need_dataset PATH: a MindRecord folder written by preprocessing.
need_dataset() {
  [ -f "$1/metadata.json" ] || { echo "DATASET_PATH '$1' has no metadata.json (run src/preprocess_data.py)" >&2; exit 2; }
}

# config_for TARGET: the config file of a device target (the only place the scripts map them; the same
# mapping is src/model_utils/config.py's TARGETS, checked by a test). Ascend310 (batch inference) uses
# the Ascend config. Used as CONFIG=$(config_for ...) under `set -e`, so a bad TARGET stops the calling
# script with status 2.
config_for() {
  case "$1" in Ascend|Ascend310) echo npu_config.yaml;; GPU) echo gpu_config.yaml;; CPU) echo cpu_config.yaml;;
    *) echo "DEVICE_TARGET must be Ascend, GPU or CPU, got '$1'" >&2; exit 2;; esac
}

# need_device TARGET: the MindSpore found by find_python.sh can run on TARGET (CPU always can); else its one-line
# reason (the targets it supports, what to install) and exit 2, before any rank starts.
need_device() {
  [ "$1" = CPU ] && return 0
  (cd "$REPO_ROOT" && "$PY" -m src.utils.runtime --check_device="$1" 2>&1 | grep -v -E '^\[(INFO|WARNING|ERROR|DEBUG)\]' >&2; exit "${PIPESTATUS[0]}") || exit 2
}
