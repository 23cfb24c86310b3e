#!/bin/bash
# Build ascend310_infer/out/main against the MindSpore C++ inference API.
#   bash ascend310_infer/build.sh            # MINDSPORE_PATH, else an installed mindspore / mindspore_lite
#   MINDSPORE_PATH=/path bash ascend310_infer/build.sh
# MINDSPORE_PATH must hold include/api/model.h and lib/ with the runtime library (a MindSpore Ascend
# install, a MindSpore Lite package, or `bash ascend310_infer/fetch_mindspore_lite.sh` for a compile check).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"

has_api() { [ -n "$1" ] && [ -f "$1/include/api/model.h" ] && [ -d "$1/lib" ]; }

if [ -n "${MINDSPORE_PATH:-}" ]; then
  if ! has_api "$MINDSPORE_PATH"; then
    echo "build.sh: MINDSPORE_PATH='$MINDSPORE_PATH' has no include/api/model.h and lib/ (the MindSpore C++ API)" >&2
    exit 1
  fi
else
  tried=""
  for mod in mindspore_lite mindspore; do
    dir="$("$PYTHON" -c "import os, $mod; print(os.path.dirname($mod.__file__))" 2>/dev/null || true)"
    [ -z "$dir" ] && continue
    tried="$tried $dir"
    if has_api "$dir"; then MINDSPORE_PATH="$dir"; break; fi
  done
  if [ -z "${MINDSPORE_PATH:-}" ]; then
    echo "build.sh: the MindSpore C++ inference API (include/api/model.h + lib/) was not found." >&2
    echo "  looked in:${tried:- (no mindspore or mindspore_lite Python package importable with $PYTHON)}" >&2
    echo "  The mindspore 2.x pip wheel ships no C++ API. Set MINDSPORE_PATH to a MindSpore Ascend/GPU install" >&2
    echo "  or a MindSpore Lite package that has include/api and lib/ (for a compile-only check:" >&2
    echo "  MINDSPORE_PATH=\$(bash ascend310_infer/fetch_mindspore_lite.sh) bash ascend310_infer/build.sh)." >&2
    echo "  On CPU, scripts/run_infer_cpu.sh runs the same batch files through src/inference/runner.py." >&2
    exit 1
  fi
fi

echo "build.sh: MindSpore C++ API from $MINDSPORE_PATH"
cmake -S "$HERE" -B "$HERE/build" -DMINDSPORE_PATH="$MINDSPORE_PATH" -DMS_CXX11_ABI="${MS_CXX11_ABI:-0}" >/dev/null
cmake --build "$HERE/build" -j "$(nproc)"
echo "build.sh: built $HERE/out/main"
