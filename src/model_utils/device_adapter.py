"""Picks the ModelArts or the local adapter depending on `enable_modelarts`."""
from src.model_utils import local_adapter, moxing_adapter


def _adapter(config):
    return moxing_adapter if config.enable_modelarts else local_adapter


def get_device_id(config):
    return _adapter(config).get_device_id()


def get_device_num(config):
    return _adapter(config).get_device_num()


def get_rank_id(config):
    return _adapter(config).get_rank_id()


def get_job_id(config):
    return _adapter(config).get_job_id()
