"""Checks a training run makes before it loads MindSpore or allocates anything: the dataset is there and whole,
its tables fit the config, and its splits have samples for every rank. train.py runs them first (errors in a
second, not after MindSpore's start-up); the Trainer runs them again with the real number of ranks."""
from typing import List, Tuple

from src.data.packed_format import load_metadata, shard_sizes, table_sizes_for


def evaluates(cfg) -> bool:
    """True when training will evaluate on the test split (do_eval, or eval_interval_steps)."""
    return bool(cfg.do_eval or cfg.eval_interval_steps)


def check_dataset(cfg, ranks: int = 1) -> Tuple[dict, List[int]]:
    """(metadata.json, table sizes) of cfg.dataset_path after checking that its files have their recorded sizes,
    that its tables agree with the config, that the test split has samples when training evaluates, and that
    each of `ranks` ranks gets at least one batch of training samples. Raises DatasetError or ValueError naming
    the dataset and the key to change."""
    meta = load_metadata(cfg.dataset_path)
    sizes = table_sizes_for(cfg, meta)
    if evaluates(cfg) and meta["samples"].get("test", 0) == 0:
        raise ValueError(f"the test split of {cfg.dataset_path} has 0 samples, so the evaluation after training "
                         f"would fail: preprocess again with more lines, or set do_eval=False and "
                         f"eval_interval_steps=0")
    per_rank = min(shard_sizes(meta, "train", ranks)) if "train" in meta["parts"] else 0
    if per_rank < cfg.batch_size:
        where = f" per rank ({ranks} ranks)" if ranks > 1 else ""
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the training split of {cfg.dataset_path}: "
                         f"{per_rank:,} samples{where}; lower batch_size or preprocess more lines")
    return meta, sizes
