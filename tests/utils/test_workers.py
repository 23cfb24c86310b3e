"""workers=auto: one worker per BYTES_PER_WORKER of input, never more than the CPUs or the tasks; a number is used as
it is; the rule is said in words."""
from src.utils import workers
from src.utils.workers import BYTES_PER_WORKER, choose_workers


def test_auto_takes_one_worker_per_share_of_input_within_cpus_and_tasks(monkeypatch):
    monkeypatch.setattr(workers, "cpus_available", lambda: 8)
    assert choose_workers("auto", BYTES_PER_WORKER // 2, 10)[0] == 1            # too small for a second worker
    assert choose_workers("auto", 3 * BYTES_PER_WORKER, 10)[0] == 3
    assert choose_workers("auto", 100 * BYTES_PER_WORKER, 10)[0] == 8           # the CPUs
    assert choose_workers("auto", 100 * BYTES_PER_WORKER, 2)[0] == 2            # the tasks (e.g. two gzip files)
    n, rule = choose_workers("auto", 3 * BYTES_PER_WORKER, 10)
    assert rule.startswith("workers=auto -> 3 (min of 8 CPUs, 10 tasks, and one worker per 64 MB")
    assert choose_workers(5, 1, 1) == (5, "workers=5")


def test_an_import_meanwhile_is_joined_before_the_block_ends_also_on_an_error(capfd):
    """The writer's import in a thread (one worker) ends before preprocessing returns or raises: an error exit
    must not shut the interpreter down mid-import (that aborted with SIGABRT); a failing import stays quiet."""
    import sys
    import pytest
    from src.utils.workers import imported_meanwhile
    sys.modules.pop("colorsys", None)
    with pytest.raises(KeyError):
        with imported_meanwhile("colorsys"):
            raise KeyError("bad input")
    assert "colorsys" in sys.modules
    capfd.readouterr()
    with imported_meanwhile("no_such_module_here"):
        ran = True                                      # the block runs; the failed import raises nothing here
    assert ran and "no_such_module_here" not in sys.modules
    assert capfd.readouterr() == ("", "")               # and prints nothing (the block's own error would be the news)


def _pid(shared, task):
    import os
    return os.getpid()


def test_tasks_run_on_the_pool_or_here_when_asked():
    """Phase B of a small input runs in the parent (`here`): its tasks see this process; otherwise the workers."""
    import os
    from src.utils.workers import Workers
    with Workers(2) as pool:
        assert set(pool.run(_pid, None, [1, 2, 3], here=True)) == {os.getpid()}
        assert os.getpid() not in pool.run(_pid, None, [1, 2, 3])
