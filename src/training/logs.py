"""The loss.log and eval.log line formats (model-zoo layout plus throughput): written and parsed here.

    loss.log  2026-11-28 10:00:00 epoch: 1, step: 100, loss is 0.512345, samples/s: 41234.5
    eval.log  2026-11-28 10:05:00 epoch: 1, step: 7812, accuracy: 0.786, auc: 0.7834, logloss: 0.4623,
              samples: 142857, eval_time: 1.93s, samples/s: 74018.2   (one line)
"""
import re
from typing import Dict, List, Optional, Tuple

from src.utils.runtime import now

_LOSS = re.compile(r"epoch: (\d+), step: (\d+), loss is ([-+0-9.eE]+|nan|inf)(?:, samples/s: ([0-9.]+))?")
_EVAL_FIELD = re.compile(r"(\w[\w/]*): ([-+0-9.eE]+|nan)s?(?:,|$)")


def loss_line(epoch: int, step: int, loss: float, samples_per_s: float) -> str:
    """One loss.log line (timestamped)."""
    return f"{now()} epoch: {epoch}, step: {step}, loss is {loss:.6f}, samples/s: {samples_per_s:.1f}"


def format_eval(result: Dict[str, float]) -> str:
    """'accuracy: ..., auc: ..., logloss: ..., samples: ..., eval_time: ...s, samples/s: ...' of an
    `evaluation.evaluate` result."""
    return (f"accuracy: {result['accuracy']:.6f}, auc: {result['auc']:.6f}, logloss: {result['logloss']:.6f}, "
            f"samples: {result['samples']}, eval_time: {result['eval_time']:.2f}s, "
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


def read_eval_log(path: str) -> List[Dict[str, float]]:
    """[{field: float}] of the eval.log lines that have an auc."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = {k: float(v) for k, v in _EVAL_FIELD.findall(line)}
            if "auc" in fields:
                rows.append(fields)
    return rows
