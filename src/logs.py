"""Parsing loss.log and eval.log lines (the formats written by src/trainer.py)."""
import re

_LOSS = re.compile(r"epoch: (\d+), step: (\d+), loss is ([-+0-9.eE]+|nan|inf)(?:, samples/s: ([0-9.]+))?")
_EVAL_FIELD = re.compile(r"(\w[\w/]*): ([-+0-9.eE]+|nan)s?(?:,|$)")


def read_loss_log(path):
    """[(epoch, step, loss, samples_per_s or None)]"""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = _LOSS.search(line)
            if m:
                rows.append((int(m.group(1)), int(m.group(2)), float(m.group(3)),
                             float(m.group(4)) if m.group(4) else None))
    return rows


def read_eval_log(path):
    """[{field: float}] for lines with an auc."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = {k: float(v) for k, v in _EVAL_FIELD.findall(line)}
            if "auc" in fields:
                rows.append(fields)
    return rows
