"""This process's place in a data- or hybrid-parallel job, and starting communication.

parallel_mode
  stand_alone      one process.
  data_parallel    every rank holds the whole table; MLP gradients are all-reduced and the sparse
                   table gradients (rows + vectors) all-gathered, so every rank applies the same
                   update, averaged over the global batch (train_step.TrainStep).
  hybrid_parallel  each table is row-wise sharded, placed whole on one rank, or replicated, by a
                   sharding plan (sharding.py); the MLPs and the interaction are data-parallel. Per step,
                   a rank sends each owner only the distinct rows it needs from it (exchange_feed.py on the
                   host, sharded_lookup.py and train_step.HybridTrainStep in the graph): ids out, vectors
                   back and gradients to the owners by all-to-all (collectives.py), the MLPs' gradients by
                   one AllReduce, so the bytes a rank sends per step do not grow with N (cost_model.py).
Everything is explicit collectives in GRAPH_MODE cells: no shard strategies, so the same code runs on all
three backends (semi-auto/auto parallel fail on CPU in 2.10). This module imports MindSpore only to start
communication, so planning and checks run without it.
"""
from dataclasses import dataclass

from src.model_utils.parallel_mode import ParallelMode


@dataclass(frozen=True)
class ParallelInfo:
    """This process's place in the job: parallel_mode, rank and number of ranks."""
    mode: ParallelMode = ParallelMode.STAND_ALONE
    rank: int = 0
    size: int = 1

    @property
    def hybrid(self) -> bool:
        """Table rows split across ranks (hybrid_parallel with more than one rank)."""
        return ParallelMode(self.mode).shards_tables and self.size > 1

    @property
    def distributed(self) -> bool:
        """More than one rank."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: writes loss.log, eval.log and the merged checkpoint."""
        return self.rank == 0


def init_parallel(parallel_mode: str) -> ParallelInfo:
    """Start communication for data/hybrid parallel (after the device is set). Returns ParallelInfo."""
    mode = ParallelMode(parallel_mode)
    if mode is ParallelMode.STAND_ALONE:
        return ParallelInfo()
    from mindspore.communication import get_group_size, get_rank, init
    try:
        init()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuntimeError(f"parallel_mode={parallel_mode}: communication init failed ({first}). Start "
                           f"distributed training with scripts/run_distribute_train_{{cpu,gpu,ascend}}.sh "
                           f"(msrun or a rank table), not plain python") from None
    return ParallelInfo(mode, get_rank(), get_group_size())
