"""Checks a training run makes before it loads MindSpore or allocates anything: the dataset is there and whole,
its tables fit the config, and its splits have samples for every rank. train.py runs them first (errors in a
second, not after MindSpore's start-up); the Trainer runs them again with the real number of ranks."""
import os
from typing import Tuple

from src.data.packed_format import METADATA, load_metadata, shard_sizes, table_sizes_for
from src.model_utils.config import check_feature_counts
from src.model_utils.spec import DLRMSpec, criteo_features, features_of
from src.training.auto_batch import AUTO_MAX, resolve_batch


def evaluates(cfg) -> bool:
    """True when training will evaluate on the test split (do_eval, or eval_interval_steps)."""
    return bool(cfg.do_eval or cfg.eval_interval_steps)


def check_dataset(cfg, ranks: int = 1) -> Tuple[dict, DLRMSpec]:
    """(metadata.json, the model's spec) of cfg.dataset_path after setting batch_size auto to a number for `ranks`
    ranks (auto_batch.py; this changes cfg: give a copy to only check) and checking that its files have their recorded
    sizes, that its tables agree with the config and the model keys with its features, that the test split has
    samples when training evaluates, and that each of `ranks` ranks gets at least one batch of training samples.
    Raises DatasetError or ValueError naming the dataset and the key to change."""
    meta = load_metadata(cfg.dataset_path)
    check_feature_counts(cfg, meta["dense_dim"], meta["slot_dim"], f"dataset {cfg.dataset_path}")
    resolve_batch(cfg, meta, ranks)                        # batch_size auto: a number from here on
    table_sizes_for(cfg, meta)
    spec = DLRMSpec.from_config(cfg, features_of(meta))
    if (cfg.target_auc or cfg.early_stop_patience) and not meta["samples"].get("val", 0):
        raise ValueError(f"target_auc and early_stop_patience decide on the validation split, and {cfg.dataset_path} "
                         f"has none: preprocess again with val_size (the default takes the end of the training lines) "
                         f"or val_split=True")
    if evaluates(cfg) and meta["samples"].get("test", 0) == 0:
        raise ValueError(f"the test split of {cfg.dataset_path} has 0 samples, so the evaluation after training "
                         f"would fail: preprocess again with more lines, or set do_eval=False and "
                         f"eval_interval_steps=0")
    per_rank = min(shard_sizes(meta, "train", ranks)) if "train" in meta["parts"] else 0
    if per_rank < cfg.batch_size:
        where = f" per rank ({ranks} ranks)" if ranks > 1 else ""
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the training split of {cfg.dataset_path}: "
                         f"{per_rank:,} samples{where}; lower batch_size (Adam and Adagrad: scale learning_rate by the "
                         f"square root of the batch ratio, e.g. --batch_size=128 --learning_rate=0.0018 for the "
                         f"default's 0.01 at 4096) or preprocess more lines")
    return meta, spec


def config_spec(cfg) -> DLRMSpec:
    """The model of the config's keys without a checkpoint: over the dataset's features (metadata.json, checked
    against the config) when cfg.dataset_path has one, else over categorical_feature_sizes (the Criteo layout,
    13 dense features); neither is an error naming both keys."""
    if cfg.dataset_path and os.path.isfile(os.path.join(cfg.dataset_path, METADATA)):
        meta = load_metadata(cfg.dataset_path, check_files=False)
        check_feature_counts(cfg, meta["dense_dim"], meta["slot_dim"], f"dataset {cfg.dataset_path}")
        resolve_batch(cfg, meta, cfg.rank_size if cfg.plan_only else 1)
        table_sizes_for(cfg, meta)
        return DLRMSpec.from_config(cfg, features_of(meta))
    if cfg.categorical_feature_sizes:
        if cfg.batch_size == "auto":                      # no data to size it by: the default recipe's batch
            cfg.batch_size = AUTO_MAX
        return DLRMSpec.from_config(cfg, criteo_features(cfg.categorical_feature_sizes))
    raise ValueError(f"no table sizes for the model: dataset_path '{cfg.dataset_path}' holds no {METADATA} and "
                     f"categorical_feature_sizes is empty; set one of them")
