"""The metrics against scikit-learn's (the project computes them with numpy to keep scikit-learn's import cost out
of every evaluating process)."""
import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from src.training.metrics import ctr_metrics


@pytest.mark.parametrize("n,decimals", [(7, None), (1000, None), (1000, 1), (50000, 2)])
def test_auc_and_logloss_equal_scikit_learns(n, decimals):
    rng = np.random.default_rng(n)
    prob = rng.random(n)
    if decimals is not None:
        prob = np.round(prob, decimals)                  # many ties: each counts half
    label = (rng.random(n) < prob).astype(np.float32)
    label[:2] = [0, 1]
    got = ctr_metrics(prob.astype(np.float32), label)
    p32 = prob.astype(np.float32).astype(np.float64)
    assert abs(got["auc"] - roc_auc_score(label, p32)) < 1e-12
    assert abs(got["logloss"] - log_loss(label, np.clip(p32, 1e-7, 1 - 1e-7), labels=[0, 1])) < 1e-9
    assert got["accuracy"] == float(np.mean((p32 > 0.5) == (label == 1))) and got["samples"] == n


def test_one_class_gives_nan_auc_and_mismatched_lengths_are_refused():
    assert np.isnan(ctr_metrics(np.array([0.2, 0.9]), np.array([1, 1]))["auc"])
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        ctr_metrics(np.zeros(3), np.zeros(2))


@pytest.mark.parametrize("base_rate", [None, 0.25])
def test_normalized_entropy_and_calibration_equal_numpys(base_rate):
    """NE = logloss / the logloss of always predicting the training click rate (the labels' own rate without one);
    calibration = mean prediction / mean label."""
    rng = np.random.default_rng(3)
    prob = rng.random(5000) * 0.6
    label = (rng.random(5000) < prob * 0.9).astype(np.float32)
    got = ctr_metrics(prob, label, base_rate)
    label = label.astype(np.float64)
    p = label.mean() if base_rate is None else base_rate
    baseline = -np.mean(label * np.log(p) + (1 - label) * np.log(1 - p))
    assert got["ne"] == pytest.approx(log_loss(label, prob) / baseline, rel=1e-9)
    assert got["calibration"] == pytest.approx(prob.mean() / label.mean(), rel=1e-9)
