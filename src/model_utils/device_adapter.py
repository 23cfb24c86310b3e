"""The device this process runs on, from its launcher's environment (local runs and ModelArts alike)."""
import os
from typing import Optional


def env_int(name: str, default: Optional[int]) -> Optional[int]:
    """An integer environment variable (`default` when unset or empty); a non-integer value is a ValueError
    naming the variable."""
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def get_device_id(default: Optional[int] = 0) -> Optional[int]:
    """DEVICE_ID set by the launcher (run_standalone_train.sh, the Ascend rank-table launcher, ModelArts), else
    `default`: 0 for one process; None for a distributed rank, where msrun's local rank picks the device."""
    return env_int("DEVICE_ID", default)
