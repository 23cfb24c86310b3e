"""Picks the ModelArts or the local adapter depending on `enable_modelarts`."""
from src.model_utils import local_adapter, moxing_adapter


def get_device_id(config) -> int:
    """The device this process runs on (DEVICE_ID, default 0)."""
    return (moxing_adapter if config.enable_modelarts else local_adapter).get_device_id()
