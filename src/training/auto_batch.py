"""batch_size: auto, the default: a batch size that fits the data, and the learning rate scaled with it.

The default recipe trains at batch AUTO_MAX (4096) with the learning rate the config gives. A training split that
holds fewer than AUTO_MAX x MIN_STEPS samples per rank gets the largest power of two that still leaves MIN_STEPS
steps an epoch (at least AUTO_MIN), and the learning rate scales with it: by the square root of the batch ratio for
Adagrad and Adam, linearly for SGD (the large-batch rules). Before this, 1,714 real rows were an error (the batch
larger than the data) and 12k rows made 2 steps of 4096 in an epoch, a model below chance (docs/benchmarks.md).
"""
from typing import Optional

from src.data.packed_format import shard_sizes
from src.model_utils.spec import OPTIMIZERS

AUTO_MAX, AUTO_MIN = 4096, 16
MIN_STEPS = 64


def auto_batch(train_rows: int) -> int:
    """The batch for `train_rows` training samples per rank: AUTO_MAX, or the largest power of two with at least
    MIN_STEPS steps an epoch, at least AUTO_MIN."""
    b = AUTO_MAX
    while b > AUTO_MIN and train_rows < b * MIN_STEPS:
        b //= 2
    return b


def scaled_rate(rate: float, optimizer: str, batch: int, from_batch: int = AUTO_MAX) -> float:
    """The learning rate `rate` of batch `from_batch`, at `batch`: the square root of the ratio for an adaptive
    optimizer (Adagrad, Adam), the ratio otherwise (SGD). The one place a rate moves with the batch."""
    ratio = batch / from_batch
    return rate * (ratio ** 0.5 if OPTIMIZERS[optimizer].adaptive else ratio)


def resolve_batch(cfg, meta: dict, ranks: int = 1) -> Optional[str]:
    """With batch_size auto, set cfg.batch_size and cfg.learning_rate for the dataset's training split over `ranks`
    ranks, and return the rule in one line (None when batch_size is a number: nothing changes)."""
    if cfg.batch_size != "auto":
        return None
    rows = min(shard_sizes(meta, "train", ranks)) if "train" in meta["parts"] else 0
    batch = auto_batch(rows)
    rate = scaled_rate(cfg.learning_rate, cfg.optimizer, batch)
    line = (f"batch_size=auto -> {batch} ({rows:,} training samples{' per rank' if ranks > 1 else ''}: at most "
            f"{AUTO_MAX}, at least {MIN_STEPS} steps an epoch)")
    if batch != AUTO_MAX:
        line += (f"; learning_rate {cfg.learning_rate:g} -> {rate:.4g} (x {'sqrt ' if OPTIMIZERS[cfg.optimizer].adaptive else ''}"
                 f"({batch}/{AUTO_MAX}), {cfg.optimizer})")
    cfg.batch_size, cfg.learning_rate = batch, rate
    object.__setattr__(cfg, "batch_rule", line)           # for the run's description (Trainer.describe)
    return line
