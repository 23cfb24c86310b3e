#!/bin/bash
# Run the test suite (sets up .venv first). Extra arguments go to pytest.
set -e
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
# Two test processes (pytest-xdist), each taking whole files (module fixtures are shared within a file); the
# settings (durations printed every run, failed tests' folders only kept) are pyproject.toml's.
#   bash scripts/run_tests.sh -m "not slow"     # the quick loop
#   bash scripts/run_tests.sh --cluster         # also the 3- and 4-rank matrix
exec "$PY" -m pytest -q -n 2 --dist loadfile tests "$@"
