"""The loss.log and eval.log line formats (model-zoo layout plus throughput): written and parsed here.

    loss.log  2026-11-28 10:00:00 epoch: 1, step: 100, loss is 0.512345, samples/s: 41234.5
    eval.log  2026-11-28 10:05:00 split: val, epoch: 1, step: 7812, accuracy: 0.786, auc: 0.7834, logloss: 0.4623,
              samples: 42857, ne: 0.8, calibration: 0.98, eval_time: 1.93s, samples/s: 74018.2   (one line; split: val
              for the evaluations that decide, test for the one that reports at the end)
"""
import re
from typing import Dict, List, Optional, Tuple

from src.utils.runtime import now

_LOSS = re.compile(r"epoch: (\d+), step: (\d+), loss is ([-+0-9.eE]+|nan|inf)(?:, samples/s: ([0-9.]+))?")
_EVAL_FIELD = re.compile(r"(\w[\w/]*): ([-+0-9.eE]+|nan)s?(?:,|$)")
_SPLIT = re.compile(r"split: (\w+)")


def loss_line(epoch: int, step: int, loss: float, samples_per_s: float) -> str:
    """One loss.log line (timestamped)."""
    return f"{now()} epoch: {epoch}, step: {step}, loss is {loss:.6f}, samples/s: {samples_per_s:.1f}"


def format_metrics(result: Dict[str, float]) -> str:
    """'accuracy: ..., auc: ..., logloss: ..., samples: N, ne: ..., calibration: ...': the metrics of every command
    that prints them (NE: logloss over that of always predicting the training click rate; calibration: mean prediction
    over mean label)."""
    return (f"accuracy: {result['accuracy']:.6f}, auc: {result['auc']:.6f}, logloss: {result['logloss']:.6f}, "
            f"samples: {result['samples']}, ne: {result['ne']:.6f}, calibration: {result['calibration']:.6f}")


def format_eval(result: Dict[str, float]) -> str:
    """format_metrics plus ', eval_time: ...s, samples/s: ...' of an `evaluation.evaluate` result."""
    return (f"{format_metrics(result)}, eval_time: {result['eval_time']:.2f}s, "
            f"samples/s: {result['samples_per_s']:.1f}")


def eval_line(prefix: str, result: Dict[str, float]) -> str:
    """One eval.log line: timestamp, `prefix` (e.g. 'epoch: 1, step: 100'), the metrics."""
    return f"{now()} {prefix}, {format_eval(result)}"


def read_loss_log(path: str) -> List[Tuple[int, int, float, Optional[float]]]:
    """[(epoch, step, loss, samples_per_s or None)] of a loss.log."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = _LOSS.search(line)
            if m:
                rows.append((int(m.group(1)), int(m.group(2)), float(m.group(3)),
                             float(m.group(4)) if m.group(4) else None))
    return rows


def read_eval_log(path: str) -> List[Dict[str, object]]:
    """[{field: float, "split": "val" | "test"}] of the eval.log lines that have an auc (split test for lines written
    before splits were named)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields: Dict[str, object] = {k: float(v) for k, v in _EVAL_FIELD.findall(line)}
            if "auc" in fields:
                m = _SPLIT.search(line)
                fields["split"] = m.group(1) if m else "test"
                rows.append(fields)
    return rows
