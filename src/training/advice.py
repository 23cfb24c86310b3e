"""What training tells a person about a choice that measured badly, in one line each (no decision is taken here)."""
from typing import Optional

from src.model_utils.spec import Optimizer


def warmup_note(optimizer: Optimizer, warmup_steps: int) -> Optional[str]:
    """An adaptive optimizer without a warmup: its first updates move every weight by the full rate."""
    if not optimizer.adaptive or warmup_steps:
        return None
    return (f"note: {optimizer.name} without warmup_steps: its first updates move every weight by the full learning "
            f"rate, which can leave ReLU units dead for good (docs/benchmarks.md, 'The seed-123 collapse'); the "
            f"configs warm up over 20 steps")


def unusable_model(auc: float) -> Optional[str]:
    """A final test AUC below chance is never reported as a result: what to do instead."""
    if auc >= 0.5:
        return None
    return (f"not a usable model: its auc {auc:.6f} is below 0.5 (chance) on the test split; with few training rows "
            f"use batch_size auto (the default) or a smaller batch, or more epochs (keep_best keeps the best on "
            f"validation)")
