"""Test set-up: the repository and tests/ on sys.path, MindSpore's log at errors only, and the shared fixtures
(tests/fixtures/) registered for every test folder."""
import os
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(TESTS))
sys.path.insert(0, TESTS)
os.environ.setdefault("GLOG_v", "3")

from fixtures.datasets import (avazu, fixture_file, movielens, ms_context, real_dataset, real_ds,  # noqa: E402,F401
                               real_val, synth_dataset, terabyte, trained)
from fixtures.bundles import bundles  # noqa: E402,F401


def pytest_addoption(parser):
    parser.addoption("--cluster", action="store_true",
                     help="also run the long runs outside CI's time budget: the 3- and 4-rank matrix (plans x "
                          "optimizers, 4 -> 3 resume), the multi-hot launches at 2 and 3 ranks, and the main job's four "
                          "variants in one copy of the repository (about 6 minutes)")


# The longest files first: pytest-xdist (--dist loadfile) hands out whole files in collection order, so a long file
# collected last keeps one worker busy after the others have finished (the times: docs/benchmarks.md, "The test
# suite's time").
LONGEST_FIRST = ("training/test_distributed.py", "commands/test_readme_commands.py", "commands/test_main_job.py", "commands/test_faults.py",
                 "commands/test_distributed_launcher.py", "commands/test_mismatch.py", "tools/test_bad_inputs.py",
                 "inference/test_cpp.py", "commands/test_own_data.py")


def _file_rank(item) -> int:
    path = item.nodeid.split("::")[0]
    return next((i for i, f in enumerate(LONGEST_FIRST) if path.endswith(f)), len(LONGEST_FIRST))


def pytest_collection_modifyitems(config, items):
    """The longest files first (LONGEST_FIRST; the rest in their order); `cluster` tests run only with --cluster: the
    suite (and CI) stays within its time budget without them."""
    items.sort(key=_file_rank)                      # stable: tests keep their order within a file
    if config.getoption("--cluster"):
        return
    import pytest
    skip = pytest.mark.skip(reason="the multi-rank matrix, the multi-hot launches and the main job's variants run "
                                   "with --cluster (bash scripts/run_tests.sh --cluster)")
    for item in items:
        if "cluster" in item.keywords:
            item.add_marker(skip)
