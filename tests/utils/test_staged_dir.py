"""Temporary output folders: a run killed before it could lock its folder leaves nothing behind, even for a rerun
started at once."""
import fcntl
import os
import threading
import time

from src.utils.staged_dir import LOCK, NEW_FOLDER_SECONDS, locked_tmpdir, remove_stale


def test_a_temporary_folder_killed_before_its_lock_is_removed_by_the_next_run(tmp_path):
    """A run killed between creating `.NAME.tmp-X` and locking it leaves an empty folder without a lock file: the next
    run removes it, waiting until it is NEW_FOLDER_SECONDS old when it is younger (a rerun started at once after the
    kill); a folder its live run locks meanwhile, or has locked, is kept."""
    dead = tmp_path / ".out.tmp-dead"
    dead.mkdir()
    start = time.time()
    assert remove_stale(str(tmp_path), "out") == 1 and not dead.exists()
    assert NEW_FOLDER_SECONDS <= time.time() - start < NEW_FOLDER_SECONDS + 1
    young = tmp_path / ".out.tmp-young"
    young.mkdir()
    held = []

    def lock_soon():                                   # a live run that locks its new folder a moment later
        time.sleep(0.3)
        fd = os.open(str(young / LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.append(fd)
    t = threading.Thread(target=lock_soon)
    t.start()
    assert remove_stale(str(tmp_path), "out") == 0 and young.exists()
    t.join()
    with locked_tmpdir(str(tmp_path), "out") as live:
        assert remove_stale(str(tmp_path), "out") == 0 and os.path.isdir(live) and young.exists()
    os.close(held[0])
