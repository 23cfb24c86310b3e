#!/bin/bash
# Run the test suite (sets up .venv first). Extra arguments go to pytest.
set -e
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
exec "$PY" -m pytest -q tests "$@"
