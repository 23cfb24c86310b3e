"""The parallel layout of a training job, a typed value (the config key parallel_mode holds its name)."""
from enum import StrEnum


class ParallelMode(StrEnum):
    """stand_alone: one process. data_parallel: every rank holds every table, gradients averaged. hybrid_parallel:
    tables placed by the sharding plan, lookups exchanged all-to-all, the MLPs data-parallel (src/training/parallel.py).
    A StrEnum: its members print and compare as their names."""
    STAND_ALONE = "stand_alone"
    DATA = "data_parallel"
    HYBRID = "hybrid_parallel"

    @property
    def shards_tables(self) -> bool:
        """Table rows placed across ranks (hybrid_parallel)."""
        return self is ParallelMode.HYBRID
