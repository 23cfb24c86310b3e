"""The distributed launcher's exit when a rank dies mid-run: exit 1 at once (not after MindSpore's 30 s heartbeat
timeout), naming the rank, its exit code and the end of its log."""
import re
import time

import psutil
import pytest

from fixtures.commands import Started, env
from fixtures.paths import TEST_RECIPE

B = 16
pytestmark = pytest.mark.slow


def test_a_killed_rank_fails_the_job_at_once_with_its_name(real_ds, tmp_path):
    job = Started(["bash", "scripts/run_distribute_train_cpu.sh", "2", real_ds, *TEST_RECIPE, f"--batch_size={B}",
                   "--train_epochs=10000", "--do_eval=False", "--save_checkpoint=False", "--log_interval_steps=10"],
                  tmp_path / "out", env=env(RUN_DIR=str(tmp_path)))
    victim = None
    deadline = time.time() + 120
    while victim is None and time.time() < deadline:
        time.sleep(0.5)
        if (tmp_path / "loss.log").exists():          # training is under way
            for p in psutil.Process(job.pid).children(recursive=True):
                try:
                    if p.environ().get("RANK_ID") == "1" and "train.py" in " ".join(p.cmdline()):
                        victim = p
                except psutil.Error:
                    pass
    assert victim is not None, "rank 1 never started training"
    victim.kill()
    killed = time.time()
    code, out, err = job.wait(timeout=180)
    assert code == 1 and time.time() - killed < 20       # not after MindSpore's 30 s heartbeat timeout
    assert "distributed training FAILED" in err and "rank 1 never reported a result" in err
    assert re.search(rf"rank 1 \(pid {victim.pid}\) exited with code -9 \(killed by signal 9\)", err), err
