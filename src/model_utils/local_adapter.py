"""Device facts for a local (non-ModelArts) run, read from the launcher's environment."""
import os


def env_int(name: str, default: int) -> int:
    """An integer environment variable; a non-integer value is a ValueError naming the variable."""
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def get_device_id() -> int:
    """DEVICE_ID from the launcher's environment (0 when unset)."""
    return env_int("DEVICE_ID", 0)
