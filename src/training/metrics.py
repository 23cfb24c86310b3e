"""Click-through metrics over all evaluated samples (not the last batch, as mindspore.train.ROC)."""
from typing import Dict

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score


def ctr_metrics(prob: np.ndarray, label: np.ndarray) -> Dict[str, float]:
    """accuracy (threshold 0.5), AUC (nan when only one class is present), logloss and sample count.

    Args:
        prob: click probabilities, any shape with n elements ([n] or [n, 1]).
        label: 0/1 labels, n elements.
    """
    prob = np.asarray(prob, np.float64).reshape(-1)
    label = np.asarray(label).reshape(-1).astype(np.int64)
    if len(prob) != len(label):
        raise ValueError(f"{len(prob)} predictions for {len(label)} labels")
    if len(label) == 0:
        raise ValueError("no samples to evaluate")
    both = len(np.unique(label)) == 2
    return {
        "accuracy": float(np.mean((prob > 0.5) == (label == 1))),
        "auc": float(roc_auc_score(label, prob)) if both else float("nan"),
        "logloss": float(log_loss(label, np.clip(prob, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "samples": int(len(label)),
    }
