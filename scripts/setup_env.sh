#!/bin/bash
# Create (or reuse) the virtual environment .venv at the repository root with the pinned requirements.
# Sourced by the other scripts; afterwards $PY is the environment's python and its bin is on PATH.
set -e
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
PYTHON_BIN="${PYTHON_BIN:-python3.11}"
command -v "$PYTHON_BIN" >/dev/null 2>&1 || PYTHON_BIN=python3
STAMP="$VENV/.requirements.sha"
WANT="$(sha256sum "$REPO_ROOT/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PYTHON_BIN --version 2>&1)" >&2
  "$PYTHON_BIN" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "setup: installing requirements.txt into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REPO_ROOT/requirements.txt"
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export PY="$VENV/bin/python"
export GLOG_v="${GLOG_v:-3}"   # MindSpore: errors only
