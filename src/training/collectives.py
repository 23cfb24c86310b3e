"""The collectives of data- and hybrid-parallel training as GRAPH_MODE cells: a barrier, an AllGather, and the
all-to-all of the hybrid exchange (one AlltoAll where the backend has it, else N-1 rounds of AllGather; which
one each backend uses is cost_model.EXCHANGE).

Collectives pair up across ranks in the order each rank launches them, and MindSpore's graph runtime launches
kernels that do not depend on each other in whatever order it picks, which need not be the same on every
rank. Every collective in a step therefore takes an explicit dependency on the one before it (ops.depend):
the rounds of one all-to-all here, and the collectives of a train step in train_step.py.
"""
from typing import List

import numpy as np
from mindspore import Tensor, nn, ops

from src.training.parallel import ParallelInfo


def round_targets(rank: int, size: int) -> List[int]:
    """The rank each round j = 1 .. N-1 of the AllGather all-to-all sends this rank's block to: (rank + j) mod N."""
    return [(rank + j) % size for j in range(1, size)]


def source_rounds(rank: int, size: int) -> List[int]:
    """For each source rank s, the round that brings s's block for this rank: (rank - s) mod N (0: its own block,
    which never travels)."""
    return [(rank - src) % size for src in range(size)]


class Barrier(nn.Cell):
    """All ranks meet here (an AllReduce of one number)."""

    def __init__(self):
        super().__init__()
        self.all_reduce = ops.AllReduce()
        self.one = Tensor(np.ones(1, np.float32))

    def construct(self):
        return self.all_reduce(self.one)


class AllGatherCell(nn.Cell):
    """x [m, ...] on each rank -> [N*m, ...], rank-major."""

    def __init__(self):
        super().__init__()
        self.all_gather = ops.AllGather()

    def construct(self, x):
        return self.all_gather(x)


class AllToAll(nn.Cell):
    """x [N*C, ...] whose block k goes to rank k -> [N*C, ...] whose block k came from rank k.
    native: ops.AlltoAll (HCCL on Ascend). Otherwise (CPU, GPU: no AlltoAll kernel, see cost_model.py) N-1 rounds
    of AllGather: in round j every rank contributes its block for rank (rank + j) mod N (round_targets) and keeps
    the block that rank (rank - j) mod N sent it (source_rounds); its own block never leaves it. The same numbers;
    each rank sends (N-1) x (N-1) blocks instead of N-1 (equal for N = 2). Round j waits for round j-1 (see the
    module docstring: without it, 3 ranks ran the rounds in different orders and read each other's blocks)."""

    def __init__(self, info: ParallelInfo, native: bool):
        super().__init__()
        self.size, self.rank, self.native = info.size, info.rank, native
        if native:
            from mindspore.communication import GlobalComm
            self.op = ops.AlltoAll(info.size, 0, 0, GlobalComm.WORLD_COMM_GROUP)
        else:
            self.all_gather = ops.AllGather()
            self.targets = round_targets(info.rank, info.size)
            self.round_of = source_rounds(info.rank, info.size)

    def construct(self, x):
        if self.native:
            return self.op(x)
        c = x.shape[0] // self.size                  # contiguous dim-0 slices only (a reshape to [N, C, ...]
        got = ()                                      # and indexing it measured 5x slower on CPU)
        for dst in self.targets:
            block = x[dst * c:(dst + 1) * c]
            if got:
                block = ops.depend(block, got[-1])
            got = got + (self.all_gather(block),)                                   # [N*C, ...] source-major
        parts = ()
        for src in range(self.size):
            j = self.round_of[src]
            if j == 0:
                parts = parts + (x[self.rank * c:(self.rank + 1) * c],)
            else:
                parts = parts + (got[j - 1][src * c:(src + 1) * c],)
        return ops.concat(parts, 0)
