"""The benchmark command's suites that live in their own modules (src/tools/benchmark.py runs them)."""
