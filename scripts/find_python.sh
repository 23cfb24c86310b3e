#!/bin/bash
# The Python the launchers run (sourced): the user's own environment first, because on a cluster MindSpore must be
# the build that matches the installed CUDA/CANN; this repository's .venv (made by run_main.sh or run_tests.sh)
# only when the python on PATH has no MindSpore. Nothing is installed here. Afterwards $PY is that interpreter and
# its bin folder leads PATH (msrun starts plain `python`).
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
has_mindspore() { "$1" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("mindspore") is None)' 2>/dev/null; }
PY=""
for cand in "${PYTHON:-}" "$(command -v python 2>/dev/null)" "$(command -v python3 2>/dev/null)" "$REPO_ROOT/.venv/bin/python"; do
  if [ -n "$cand" ] && [ -x "$cand" ] && has_mindspore "$cand"; then PY="$cand"; break; fi
done
if [ -z "$PY" ]; then
  echo "no Python with MindSpore found (tried \$PYTHON, python and python3 on PATH, and $REPO_ROOT/.venv):" \
       "install MindSpore for your device (https://www.mindspore.cn/install; CPU: pip install mindspore==2.10.0)," \
       "or run 'bash scripts/run_main.sh' once to create .venv for CPU" >&2
  exit 2
fi
export PY
export PATH="$(dirname "$PY"):$PATH"
export GLOG_v="${GLOG_v:-3}"   # MindSpore: errors only
