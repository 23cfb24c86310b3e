"""Output folders that appear whole or not at all, and only replace what this project wrote.

`staged_dir(out_dir, owned)` yields an empty temporary folder beside out_dir; when the block ends
normally it is swapped into place. Rules:
  * out_dir may be replaced only if it is missing, empty, or `owned(out_dir)` says this project wrote
    it (its manifest / metadata file, or only files of the layout it writes). Anything else is refused
    with an OutputError naming the folder, before any work is done, and again before the swap.
  * On an error (or a kill) out_dir is left as it was.
  * The temporary folder `.NAME.tmp-XXXXXXXX` holds an flock on its `.lock` file for as long as its run
    lives. A later run removes such folders only when it can take that lock: a folder whose run is gone
    (killed, power loss), never one another live process is writing, whatever machine or container
    (process-id namespace) that process runs in. A folder that is still empty and without its lock file 2 s
    after its creation is a run killed between creating it and locking it, and is removed too.
"""
import fcntl
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from typing import BinaryIO, Callable, Iterator, Optional

LOCK = ".lock"


class OutputError(ValueError):
    """An output folder cannot be written without destroying something this project did not write."""


def has_file(name: str) -> Callable[[str], bool]:
    """owned(): the folder holds `name` (a manifest or metadata file this project writes)."""
    return lambda folder: os.path.isfile(os.path.join(folder, name))


def only_files(*suffixes: str) -> Callable[[str], bool]:
    """owned(): every entry of the folder is a regular file ending with one of `suffixes`."""
    def check(folder: str) -> bool:
        return all(e.is_file(follow_symlinks=False) and e.name.endswith(suffixes) for e in os.scandir(folder))
    return check


def check_replaceable(out_dir: str, owned: Optional[Callable[[str], bool]], what: str) -> None:
    """Raise OutputError unless out_dir is missing, an empty folder, or owned by this project."""
    if not os.path.lexists(out_dir):
        return
    if os.path.islink(out_dir) or not os.path.isdir(out_dir):
        raise OutputError(f"'{out_dir}' exists and is not a folder; {what} is written as a folder there. Choose "
                          f"another path or move it away")
    if not os.listdir(out_dir) or (owned is not None and owned(out_dir)):
        return
    raise OutputError(f"'{out_dir}' is a folder with files this project did not write; {what} would replace it "
                      f"whole. Choose another (new or empty) folder, or move those files away")


NEW_FOLDER_SECONDS = 2.0     # a temporary folder still without its lock file this long after its creation is stale


def _empty_and_older(path: str, seconds: float) -> bool:
    """True when `path` is an empty folder created more than `seconds` ago. A younger empty folder is waited for
    until it is that old (a live run locks its folder microseconds after creating it, so one still empty and
    lockless then is a killed run's): a rerun started at once after a kill removes it too."""
    try:
        if os.listdir(path):
            return False
        age = time.time() - os.stat(path).st_mtime
        if age <= seconds:
            time.sleep(seconds - age + 0.01)
        return not os.listdir(path) and time.time() - os.stat(path).st_mtime > seconds
    except OSError:
        return False


def remove_stale(parent: str, base: str) -> int:
    """Remove `.BASE.tmp-*` folders in parent whose run is gone (their lock can be taken); returns how many."""
    removed = 0
    prefix = f".{base}.tmp-"
    for entry in os.scandir(parent) if os.path.isdir(parent) else ():
        if not entry.name.startswith(prefix) or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            fd = os.open(os.path.join(entry.path, LOCK), os.O_RDWR)
        except OSError:                  # no lock file: being created this instant, or a run killed right after
            if _empty_and_older(entry.path, NEW_FOLDER_SECONDS):      # mkdtemp (a live run locks it at once)
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue                     # a live run holds it
        shutil.rmtree(entry.path, ignore_errors=True)
        os.close(fd)
        removed += 1
    return removed


@contextmanager
def folder_lock(folder: str) -> Iterator[None]:
    """Hold an exclusive flock on FOLDER/.lock for the block: writers of one folder take turns, and a
    temporary file found there while holding it belongs to a run that is gone."""
    os.makedirs(folder, exist_ok=True)
    fd = os.open(os.path.join(folder, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def locked_tmpdir(parent: str, base: str) -> Iterator[str]:
    """A new `.BASE.tmp-XXXXXXXX` folder in parent, locked for the life of the block (stale ones of runs
    that are gone are removed first). The caller moves what it wants out of it; the rest is removed."""
    os.makedirs(parent, exist_ok=True)
    remove_stale(parent, base)
    tmp = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=parent)
    lock_fd = os.open(os.path.join(tmp, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    try:
        yield tmp
    finally:
        os.close(lock_fd)
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def staged_dir(out_dir: str, owned: Optional[Callable[[str], bool]] = None, what: str = "the output") -> Iterator[str]:
    """Yield an empty temporary folder beside out_dir that replaces it when the block ends normally
    (see the module docstring for what may be replaced). `what` names the output in messages."""
    out_dir = os.path.abspath(out_dir)
    parent, base = os.path.dirname(out_dir), os.path.basename(out_dir)
    check_replaceable(out_dir, owned, what)
    with locked_tmpdir(parent, base) as tmp:
        yield tmp
        check_replaceable(out_dir, owned, what)       # nothing of the user's appeared meanwhile
        os.remove(os.path.join(tmp, LOCK))            # the lock's fd stays held until the swap is done
        _swap_in(tmp, out_dir)


def write_atomic(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Write a file whole or not at all: `write(f)` fills PATH.tmp (binary), which is then renamed to
    path. A failed write (a full disk, a file-size limit) raises an OSError naming the file."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            write(f)
    except OSError as exc:
        raise OSError(f"cannot write '{tmp}' ({exc})") from None
    os.replace(tmp, path)


def write_json_atomic(path: str, obj: object) -> None:
    """`obj` as indented JSON in `path`, written whole or not at all (write_atomic)."""
    data = json.dumps(obj, indent=1).encode()
    write_atomic(path, lambda f: f.write(data))


class WorkDir:
    """A resumable work folder `.NAME.work` beside out_dir (see `work_dir`)."""

    def __init__(self, path: str, resumed: bool):
        self.path, self.resumed = path, resumed

    def staged(self) -> str:
        """The folder inside the work folder that becomes out_dir (created on first use)."""
        path = os.path.join(self.path, "out")
        os.makedirs(path, exist_ok=True)
        return path


def _swap_in(tmp: str, out_dir: str) -> None:
    """Replace out_dir with tmp (same file system): the old one is moved aside, then removed."""
    parent, base = os.path.dirname(out_dir), os.path.basename(out_dir)
    old = None
    if os.path.lexists(out_dir):
        old = tempfile.mkdtemp(prefix=f".{base}.old-", dir=parent)
        os.replace(out_dir, os.path.join(old, base))
    os.replace(tmp, out_dir)
    if old:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def work_dir(out_dir: str, fingerprint: dict, owned: Optional[Callable[[str], bool]] = None,
             what: str = "the output") -> Iterator[WorkDir]:
    """A work folder `.NAME.work` beside out_dir that survives a kill, for work done in resumable units.

    The folder records `fingerprint` (what the output depends on: inputs and settings). A later run with
    the same fingerprint resumes in it (`.resumed` is True): units whose outputs are complete there are
    kept. Another fingerprint discards it. An flock on its `.lock` keeps two live runs apart (the second
    one is refused, naming the folder). When the block ends normally, `WorkDir.staged()` replaces out_dir
    (the rules of `staged_dir`) and the work folder is removed. After a ValueError (bad input or settings)
    it is removed too; after anything else (a full disk, a kill) it stays for the next run.
    """
    out_dir = os.path.abspath(out_dir)
    parent, base = os.path.dirname(out_dir), os.path.basename(out_dir)
    check_replaceable(out_dir, owned, what)
    path = os.path.join(parent, f".{base}.work")
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "fingerprint.json")) and \
            any(e.name != LOCK for e in os.scandir(path)):
        raise OutputError(f"'{path}' holds files this project did not write (no fingerprint.json); {what} uses "
                          f"that folder for its work. Move it away")
    os.makedirs(path, exist_ok=True)
    fd = os.open(os.path.join(path, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputError(f"another run is writing '{path}' ({what} for {out_dir}); wait for it to end") from None
        plan_file = os.path.join(path, "fingerprint.json")
        resumed = False
        if os.path.isfile(plan_file):
            with open(plan_file, encoding="utf-8") as f:
                try:
                    resumed = json.load(f) == json.loads(json.dumps(fingerprint))
                except json.JSONDecodeError:
                    resumed = False
        if not resumed:
            for entry in os.scandir(path):
                if entry.name != LOCK:
                    (shutil.rmtree if entry.is_dir(follow_symlinks=False) else os.remove)(entry.path)
            write_json_atomic(plan_file, fingerprint)
        work = WorkDir(path, resumed)
        try:
            yield work
        except ValueError:
            shutil.rmtree(path, ignore_errors=True)   # bad input or settings: nothing there is worth keeping
            raise
        check_replaceable(out_dir, owned, what)       # nothing of the user's appeared meanwhile
        _swap_in(work.staged(), out_dir)
        shutil.rmtree(path, ignore_errors=True)       # our fd keeps the lock until the folder is gone
    finally:
        os.close(fd)
