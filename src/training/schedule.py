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

