"""ModelArts support: copies data/checkpoints in from OBS and outputs back, only when
`enable_modelarts` is true. Without the `moxing` package that is a clear error."""
import functools
import os
from typing import Callable

from src.model_utils.device_adapter import get_device_id


def _mox():
    try:
        import moxing  # noqa: F401  (only on ModelArts)
    except ImportError:
        raise RuntimeError("enable_modelarts=True needs the 'moxing' package (ModelArts images ship it); "
                           "it is not installed here. Set enable_modelarts=False for a local run.") from None
    return moxing


def sync_data(src_url: str, dst_dir: str) -> None:
    """Copy an OBS folder (or local path) into dst_dir, once per node (a marker file guards it)."""
    mox = _mox()
    os.makedirs(dst_dir, exist_ok=True)
    marker = os.path.join(dst_dir, ".sync_done")
    if get_device_id() % 8 == 0 and not os.path.exists(marker):
        mox.file.copy_parallel(src_url, dst_dir)
        open(marker, "w").close()
    while not os.path.exists(marker):
        import time
        time.sleep(1)


def moxing_wrapper(config) -> Callable:
    """Decorator for a script's main(): on ModelArts, sync inputs before and outputs after."""
    def decorator(run_func):
        @functools.wraps(run_func)
        def wrapped(*args, **kwargs):
            if not config.enable_modelarts:
                return run_func(*args, **kwargs)
            mox = _mox()
            if config.data_url:
                sync_data(config.data_url, config.data_path)
                config.dataset_path = os.path.join(config.data_path, "mindrecord")
            if config.checkpoint_url:
                sync_data(config.checkpoint_url, os.path.dirname(os.path.abspath(config.checkpoint_path)) or ".")
            os.makedirs(config.output_path, exist_ok=True)
            result = run_func(*args, **kwargs)
            if config.train_url and get_device_id() % 8 == 0:
                mox.file.copy_parallel(config.output_path, config.train_url)
            return result
        return wrapped
    return decorator
