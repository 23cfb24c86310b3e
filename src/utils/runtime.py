"""Process-wide helpers every entry point shares: the MindSpore context, timestamps, appending log
lines, byte counts for people."""
import argparse
import contextlib
import os
import re
import sys
import tempfile
import time
from typing import Iterator, List, Optional


class DeviceUnavailable(RuntimeError):
    """The installed MindSpore cannot run on the requested device target; the message is one line saying which
    targets it supports and what to install."""


INSTALL = {"GPU": "the MindSpore package built for GPU that matches this machine's CUDA",
           "Ascend": "the MindSpore package built for Ascend that matches this machine's CANN",
           "CPU": "the MindSpore package for CPU (pip install mindspore==2.10.0)"}


@contextlib.contextmanager
def _stderr_held() -> Iterator[List[bytes]]:
    """Holds what is written to file descriptor 2 (Python's loggers and native code alike) in a temporary file; the
    yielded list gets its bytes at exit. The caller decides whether to show them."""
    held: List[bytes] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield held
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            held.append(tmp.read())


def set_device(device_target: str, device_id: Optional[int] = None) -> None:
    """ms.set_device, with MindSpore's multi-line 'Unsupported device target' error turned into a
    DeviceUnavailable that names the target asked for, the targets this MindSpore supports and what to install.
    MindSpore's own log lines while it looks for the device (libcuda.so not found, ...) are shown only when the device
    was found: the one line is the whole message otherwise."""
    import mindspore as ms
    try:
        with _stderr_held() as held:
            if device_id is None:
                ms.set_device(device_target)
            else:
                ms.set_device(device_target, device_id)
    except RuntimeError as exc:
        found = re.search(r"only supports one of the \[([^\]]*)\]", str(exc))
        if found is None:
            os.write(2, b"".join(held))
            raise
        supported = [t.strip(" '\"") for t in found.group(1).split(",") if t.strip()]
        raise DeviceUnavailable(
            f"device_target={device_target} is not available: this MindSpore {ms.__version__} supports "
            f"{' and '.join(supported) or 'no device'} only. Install {INSTALL.get(device_target, 'a MindSpore build for it')} "
            f"(https://www.mindspore.cn/install), or run with --device_target={supported[0] if supported else 'CPU'}"
        ) from None
    if held and held[0]:
        os.write(2, held[0])


def setup_context(device_target: str, device_id: Optional[int] = 0) -> None:
    """GRAPH_MODE on `device_target` (CPU, GPU or Ascend); device_id None lets MindSpore pick
    (msrun's local rank). On CPU with several ranks on this machine (DLRM_LOCAL_RANKS, set by the
    distributed launchers) each rank's kernels get an equal share of the cores instead of all of them
    (2 ranks on 2 cores: 119 against 128 ms a step at batch 1024, Kaggle tables). Raises DeviceUnavailable
    when this MindSpore cannot run on device_target."""
    import mindspore as ms
    ms.set_context(mode=ms.GRAPH_MODE)
    local = int(os.environ.get("DLRM_LOCAL_RANKS", "1") or 1)
    if device_target == "CPU" and local > 1:
        ms.device_context.cpu.op_tuning.threads_num(max(1, len(os.sched_getaffinity(0)) // local))
    set_device(device_target, device_id)


def now() -> str:
    """Local time as 'YYYY-mm-dd HH:MM:SS', the timestamp of every loss.log and eval.log line."""
    return time.strftime("%Y-%m-%d %H:%M:%S")


def append_line(path: str, line: str) -> None:
    """Append one line to a log file (creating its folder); an empty path writes nothing."""
    if not path:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KB' (binary units)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024.0
    return str(n)


def main(argv: Optional[List[str]] = None) -> None:
    """`python -m src.utils.runtime --check_device=GPU`: exit 0 when this MindSpore can run on the target, else
    print why in one line and exit 2 (the launchers ask before starting any rank)."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--check_device", required=True, choices=["CPU", "GPU", "Ascend"])
    args = ap.parse_args(argv)
    try:
        set_device(args.check_device)
    except DeviceUnavailable as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
