"""Temporary output folders: a run killed before it could lock its folder leaves nothing behind for long."""
import os
import time

from src.utils.staged_dir import NEW_FOLDER_SECONDS, locked_tmpdir, remove_stale


def test_a_temporary_folder_killed_before_its_lock_is_removed_by_the_next_run(tmp_path):
    """A run killed between creating `.NAME.tmp-X` and locking it leaves an empty folder without a lock file: the
    next run removes it once it is older than NEW_FOLDER_SECONDS, and never a folder a live run has locked."""
    dead = tmp_path / ".out.tmp-dead"
    dead.mkdir()
    assert remove_stale(str(tmp_path), "out") == 0                      # just created: maybe a live run's
    old = time.time() - NEW_FOLDER_SECONDS - 1
    os.utime(dead, (old, old))
    with locked_tmpdir(str(tmp_path), "out") as live:
        assert not dead.exists()
        assert remove_stale(str(tmp_path), "out") == 0 and os.path.isdir(live)
