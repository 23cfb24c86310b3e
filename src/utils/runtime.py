"""Process-wide helpers every entry point shares: the MindSpore context, timestamps, appending log
lines, byte counts for people."""
import os
import time
from typing import Optional


def setup_context(device_target: str, device_id: Optional[int] = 0) -> None:
    """GRAPH_MODE on `device_target` (CPU, GPU or Ascend); device_id None lets MindSpore pick
    (msrun's local rank). On CPU with several ranks on this machine (DLRM_LOCAL_RANKS, set by the
    distributed launchers) each rank's kernels get an equal share of the cores instead of all of them
    (2 ranks on 2 cores: 119 against 128 ms a step at batch 1024, Kaggle tables)."""
    import mindspore as ms
    ms.set_context(mode=ms.GRAPH_MODE)
    local = int(os.environ.get("DLRM_LOCAL_RANKS", "1") or 1)
    if device_target == "CPU" and local > 1:
        ms.device_context.cpu.op_tuning.threads_num(max(1, len(os.sched_getaffinity(0)) // local))
    if device_id is None:
        ms.set_device(device_target)
    else:
        ms.set_device(device_target, device_id)


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
