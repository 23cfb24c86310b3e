"""Device/rank facts for a local (non-ModelArts) run, read from the launcher's environment."""
import os


def _env_int(name, default):
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def get_device_id():
    return _env_int("DEVICE_ID", 0)


def get_device_num():
    return _env_int("RANK_SIZE", 1)


def get_rank_id():
    return _env_int("RANK_ID", 0)


def get_job_id():
    return "Local Job"
