#!/bin/bash
# Run the test suite (sets up .venv first). Extra arguments go to pytest.
set -e
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
# Three test processes (pytest-xdist) on this 2-core machine, each taking whole files (module fixtures are shared
# within a file): the multi-rank and fault tests spend much of their time waiting (launches, timeouts, killed
# processes), and a third process fills it (docs/benchmarks.md, "The test suite's time"). The
# settings (durations printed every run, failed tests' folders only kept) are pyproject.toml's.
#   bash scripts/run_tests.sh -m "not slow"     # the quick loop
#   bash scripts/run_tests.sh --cluster         # also the 3- and 4-rank matrix, the multi-hot launches, the main job x4
exec "$PY" -m pytest -q -n 3 --dist loadfile tests "$@"
