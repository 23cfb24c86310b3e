"""The learning-rate schedule of the MLPerf DLRM reference: linear warmup, constant, polynomial decay.

    lr(step) = base * (step + 1) / warmup_steps                      step < warmup_steps
             = base                                                 warmup_steps <= step < decay_start_step
             = max(MIN_LR, base * ((decay_steps - k) / decay_steps) ** 2),  k = step - decay_start_step < decay_steps
             = MIN_LR                                               after the decay
`step` counts optimizer steps from 0 (the global step before the update). decay_steps = 0 turns the
decay off (the rate stays at base after the warmup); warmup_steps = 0 turns the warmup off. The config's
decay_steps = -1 (decay to the end of training) is turned into steps by the trainer, which knows the run's length.
Against the reference (facebookresearch/dlrm `LRPolicyScheduler`): its warmup scale is step / warmup
with steps counted from 1, which is (step + 1) / warmup here, so the first update uses base / warmup,
not 0. Between the warmup and the decay, and after the decay, the reference keeps its last computed
rate (base * (warmup - 1) / warmup, and the decay's last value); this schedule uses base and MIN_LR,
the values that sequence tends to.
"""
from dataclasses import dataclass
from typing import Tuple

MIN_LR = 1e-7
POWER = 2


def lr_at(step: int, base: float, warmup_steps: int = 0, decay_start_step: int = 0, decay_steps: int = 0) -> float:
    """Learning rate of optimizer step `step` (0-based), see the module docstring."""
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    if decay_steps > 0 and step >= decay_start_step:
        k = step - decay_start_step
        if k >= decay_steps:
            return MIN_LR
        return max(MIN_LR, base * ((decay_steps - k) / decay_steps) ** POWER)
    return base



@dataclass(frozen=True)
class Schedule:
    """The schedule of a run: lr_at's keys, decay_steps -1 meaning 'to the run's last step', and whether the table
    rows follow it (`tables`) or train at `base` throughout (their row-wise Adagrad anneals each row by its own
    accumulator: a schedule on top of it starves the rows first seen late in the epoch, and a warmup fills their
    accumulators with steps that did little; docs/benchmarks.md, "The default, chosen on data it was not tuned on")."""
    base: float
    warmup_steps: int = 0
    decay_start_step: int = 0
    decay_steps: int = 0
    tables: bool = False

    def rates(self, step: int, last_step: int) -> Tuple[float, float]:
        """(the MLPs' rate, the table rows' rate) of optimizer step `step` (0-based) of a run ending at `last_step`."""
        decay = self.decay_steps if self.decay_steps >= 0 else max(1, last_step - self.decay_start_step)
        lr = lr_at(step, self.base, self.warmup_steps, self.decay_start_step, decay)
        return lr, (lr if self.tables else self.base)
