#!/bin/bash
# Run the test suite (sets up .venv first). Extra arguments go to pytest.
set -e
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
# Keep only failed tests' temporary folders: CI machines share their disk between runs.
exec "$PY" -m pytest -q -o tmp_path_retention_policy=failed tests "$@"
