"""Evaluation of a probability network over a whole split: the one code path (and one timing) that
train.py's epoch-end eval, eval.py and the benchmarks share."""
import time
from typing import Callable, Dict, Tuple

import numpy as np

from src.data.reader import PackedBatches
from src.training.metrics import ctr_metrics
from src.utils.progress import Progress, background


def timed_metrics(prob: np.ndarray, label: np.ndarray, start: float) -> Dict[str, float]:
    """ctr_metrics of prob/label [n] plus eval_time (seconds since `start`) and samples_per_s."""
    result = ctr_metrics(prob, label)
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
             progress: bool = False) -> Dict[str, float]:
    """accuracy, auc, logloss, samples, eval_time, samples_per_s over every sample of a split."""
    start = time.time()
    prob, label = predict_split(prob_net, dataset_path, split, batch_size, progress)
    return timed_metrics(prob, label, start)
