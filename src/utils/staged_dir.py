"""Folders that appear whole or not at all: write into a temporary folder, then swap it into place."""
import os
import shutil
from contextlib import contextmanager
from typing import Iterator, Optional


@contextmanager
def staged_dir(out_dir: str, tmp: Optional[str] = None) -> Iterator[str]:
    """Yield an empty temporary folder (default: OUT_DIR.tmp-PID beside it). When the block ends
    normally it replaces out_dir (an existing out_dir is moved aside, then removed); on an error
    out_dir is left as it was. The temporary folder is removed either way."""
    out_dir = os.path.abspath(out_dir)
    tmp = tmp or f"{out_dir}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        yield tmp
        old = None
        if os.path.lexists(out_dir):
            old = f"{out_dir}.old-{os.getpid()}"
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
