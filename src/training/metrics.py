"""Click-through metrics over all evaluated samples (not the last batch, as mindspore.train.ROC).

Computed with numpy: importing scikit-learn's metrics costs about 1.5 s in every process that evaluates
(train.py, eval.py, postprocess.py, each rank); the tests check these functions against scikit-learn.
"""
from typing import Dict, Optional

import numpy as np

LOGLOSS_CLIP = 1e-7


def roc_auc(prob: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve of prob [n] for 0/1 label [n], ties counted as half (the Mann-Whitney U
    statistic from average ranks); nan when only one class is present."""
    n_pos = int(np.count_nonzero(label == 1))
    n_neg = len(label) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(prob, kind="stable")
    _, first, counts = np.unique(prob[order], return_index=True, return_counts=True)
    mean_rank = first + (counts + 1) / 2.0                    # 1-based average rank of each distinct score
    ranks = np.repeat(mean_rank, counts)                      # in sorted order
    pos_rank_sum = float(ranks[label[order] == 1].sum())
    return (pos_rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def log_loss(prob: np.ndarray, label: np.ndarray) -> float:
    """Mean binary cross-entropy of prob [n] (clipped to [1e-7, 1 - 1e-7]) against 0/1 label [n]."""
    p = np.clip(prob, LOGLOSS_CLIP, 1 - LOGLOSS_CLIP)
    return float(-np.mean(np.where(label == 1, np.log(p), np.log1p(-p))))


def baseline_logloss(base_rate: float, label_rate: float) -> float:
    """The logloss of always predicting `base_rate` (clipped as log_loss clips) on data whose click rate is
    label_rate: normalized entropy's denominator."""
    p = min(max(base_rate, LOGLOSS_CLIP), 1 - LOGLOSS_CLIP)
    return float(-(label_rate * np.log(p) + (1 - label_rate) * np.log1p(-p)))


def with_rates(result: Dict[str, float], label_rate: float, mean_prob: float,
               base_rate: Optional[float]) -> Dict[str, float]:
    """result plus ne (logloss / the logloss of always predicting base_rate, the training click rate; the data's
    own click rate when base_rate is None) and calibration (mean prediction / mean label)."""
    base = label_rate if base_rate is None else base_rate
    result["ne"] = result["logloss"] / baseline_logloss(base, label_rate) if 0 < label_rate < 1 else float("nan")
    result["calibration"] = mean_prob / label_rate if label_rate > 0 else float("nan")
    return result


def ctr_metrics(prob: np.ndarray, label: np.ndarray, base_rate: Optional[float] = None) -> Dict[str, float]:
    """accuracy (threshold 0.5), AUC (nan when only one class is present), logloss, normalized entropy (ne: logloss
    over the logloss of always predicting base_rate, the training click rate, or without it the labels' own rate:
    He et al. 2014), calibration (mean prediction / mean label) and sample count.

    Args:
        prob: click probabilities, any shape with n elements ([n] or [n, 1]).
        label: 0/1 labels, n elements.
        base_rate: the click rate normalized entropy compares with (None: the labels' mean).
    """
    prob = np.asarray(prob, np.float64).reshape(-1)
    label = np.asarray(label).reshape(-1).astype(np.int64)
    if len(prob) != len(label):
        raise ValueError(f"{len(prob)} predictions for {len(label)} labels")
    if len(label) == 0:
        raise ValueError("no samples to evaluate")
    return with_rates({
        "accuracy": float(np.mean((prob > 0.5) == (label == 1))),
        "auc": roc_auc(prob, label),
        "logloss": log_loss(prob, label),
        "samples": int(len(label)),
    }, float(label.mean()), float(prob.mean()), base_rate)
