#!/bin/bash
# Download MindSpore Lite 2.0.0 (the one package on the index with the C++ API headers and library)
# into a cache folder and print the folder to use as MINDSPORE_PATH. Cached: a second call is instant.
#   MINDSPORE_PATH=$(bash ascend310_infer/fetch_mindspore_lite.sh [CACHE_DIR])
# Only for compiling: that runtime reads MindIR up to version 1 and cannot load MindSpore 2.10 exports.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${1:-${MS_LITE_CACHE:-$HERE/../.whl}}"
VERSION=2.0.0
DEST="$CACHE/mindspore_lite-$VERSION"
PYTHON="${PYTHON:-python3}"
if [ ! -f "$DEST/include/api/model.h" ]; then
  mkdir -p "$CACHE"
  wheel="$(ls "$CACHE"/mindspore_lite-$VERSION-*.whl 2>/dev/null | head -1 || true)"
  if [ -z "$wheel" ]; then
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.7 \
      "mindspore-lite==$VERSION" -d "$CACHE" >&2
    wheel="$(ls "$CACHE"/mindspore_lite-$VERSION-*.whl | head -1)"
  fi
  tmp="$DEST.tmp-$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  "$PYTHON" - "$wheel" "$tmp" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(("mindspore_lite/include/", "mindspore_lite/lib/")):
            z.extract(name, out)
PY
  rm -rf "$DEST"
  mv "$tmp/mindspore_lite" "$DEST"
  rm -rf "$tmp"
fi
cd "$DEST" && pwd
