"""Evaluation of a probability network over a whole split: the one code path (and one timing) that
train.py's epoch-end eval, eval.py and the benchmarks share."""
import json
import os
import time
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from src.data.reader import PackedBatches
from src.training.metrics import ctr_metrics
from src.utils.progress import Progress, background


def train_click_rate(dataset_path: str) -> Optional[float]:
    """The click rate of a dataset's training split (its stats.json), normalized entropy's baseline; None without
    one."""
    try:
        with open(os.path.join(dataset_path, "stats.json"), encoding="utf-8") as f:
            return float(json.load(f)["positive_rate"])
    except (OSError, ValueError, KeyError):
        return None


def timed_metrics(prob: np.ndarray, label: np.ndarray, start: float,
                  base_rate: Optional[float] = None) -> Dict[str, float]:
    """ctr_metrics of prob/label [n] (base_rate: the training click rate, NE's baseline) plus eval_time (seconds since
    `start`) and samples_per_s."""
    result = ctr_metrics(prob, label, base_rate)
    result["eval_time"] = time.time() - start
    result["samples_per_s"] = result["samples"] / max(result["eval_time"], 1e-9)
    return result


def predict_split(prob_net: Callable, dataset_path: str, split: str, batch_size: int,
                  progress: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """(probabilities float32 [n], labels float32 [n]) for every sample of a split, in stored order.
    `prob_net(ids Tensor int32 [B, S], dense Tensor float32 [B, Dn])` -> Tensor float32 [B, 1]."""
    from mindspore import Tensor
    batches = PackedBatches(dataset_path, split, batch_size)
    prog = Progress(f"eval {split}", batches.samples, "samples", enabled=progress)
    probs, labels = [], []
    for ids, dense, label in background(iter(batches)):
        probs.append(prob_net(Tensor(ids), Tensor(dense)).asnumpy().reshape(-1))
        labels.append(label.reshape(-1))
        prog.update(len(label))
    if not labels:
        raise ValueError(f"split '{split}' of {dataset_path} has no samples to evaluate")
    return np.concatenate(probs), np.concatenate(labels)


def evaluate(prob_net: Callable, dataset_path: str, split: str, batch_size: int,
             progress: bool = False, base_rate: Optional[float] = None) -> Dict[str, float]:
    """accuracy, auc, logloss, ne, calibration, samples, eval_time, samples_per_s over every sample of a split; NE
    against `base_rate` (default: the dataset's training click rate)."""
    start = time.time()
    prob, label = predict_split(prob_net, dataset_path, split, batch_size, progress)
    return timed_metrics(prob, label, start, train_click_rate(dataset_path) if base_rate is None else base_rate)
