"""Parallel setup and the collective exchanges of data- and hybrid-parallel training.

parallel_mode
  stand_alone      one process.
  data_parallel    every rank holds the whole table; MLP gradients are all-reduced and the sparse
                   table gradients (rows + vectors) all-gathered, so every rank applies the same
                   update, averaged over the global batch.
  hybrid_parallel  rank k holds the contiguous row block [k*R//N, (k+1)*R//N) of the fused table
                   (R rows; blocks differ by at most one row); the MLPs and the interaction are
                   data-parallel. Per step, with M = B*S lookups per rank (B per-rank batch, S slots):
                     ids     AllGather                   -> every rank sees the N*M global rows
                     lookup  each owner gathers its rows, zeros elsewhere: [N*M, D] partial
                     vectors ReduceScatter               -> rank k gets its own M vectors [M, D]
                     grads   AllGather of [M, D] grads   -> owners update their rows
                     MLPs    AllReduce of the MLP gradients
Only AllGather and AllReduce run on MindSpore 2.10's CPU backend (ReduceScatter and AlltoAll have
no CPU kernel), so on CPU the ReduceScatter is an AllReduce followed by taking this rank's block:
the same result, N times the bytes. GPU (NCCL) and Ascend (HCCL) use ReduceScatter.
Everything is explicit collectives in GRAPH_MODE cells: no shard strategies, so the same code runs
on all three backends (semi-auto/auto parallel fail on CPU in 2.10).
"""
import os
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

@dataclass(frozen=True)
class ParallelInfo:
    """This process's place in the job: parallel_mode, rank and number of ranks."""
    mode: str = "stand_alone"
    rank: int = 0
    size: int = 1

    @property
    def hybrid(self) -> bool:
        """Table rows split across ranks (hybrid_parallel with more than one rank)."""
        return self.mode == "hybrid_parallel" and self.size > 1

    @property
    def distributed(self) -> bool:
        """More than one rank."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: writes loss.log, eval.log and the merged checkpoint."""
        return self.rank == 0


def init_parallel(cfg) -> ParallelInfo:
    """Start communication for data/hybrid parallel (after the device is set). Returns ParallelInfo."""
    if cfg.parallel_mode == "stand_alone":
        return ParallelInfo()
    from mindspore.communication import get_group_size, get_rank, init
    try:
        init()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuntimeError(f"parallel_mode={cfg.parallel_mode}: communication init failed ({first}). Start "
                           f"distributed training with scripts/run_distribute_train_{{cpu,gpu,ascend}}.sh "
                           f"(msrun or a rank table), not plain python") from None
    return ParallelInfo(cfg.parallel_mode, get_rank(), get_group_size())


def distributed_device_id() -> Optional[int]:
    """DEVICE_ID when a launcher set it (Ascend rank table); None lets msrun's local rank decide."""
    value = os.environ.get("DEVICE_ID")
    return int(value) if value not in (None, "") else None


def row_range(total_rows: int, size: int, rank: int) -> Tuple[int, int]:
    """Contiguous block [lo, hi) of the fused table's rows owned by `rank` (10 rows, 3 ranks: [0,3), [3,6), [6,10))."""
    return rank * total_rows // size, (rank + 1) * total_rows // size


def bytes_per_step(mode: str, n: int, batch: int, slots: int, dim: int, mlp_params: int,
                   native_reduce_scatter: bool = True) -> Dict[str, float]:
    """Bytes each rank sends per training step (ring algorithms: AllGather and ReduceScatter send
    (N-1)/N of the gathered/reduced tensor, AllReduce twice that). float32 values, int32 ids."""
    if n <= 1:
        return {"total": 0}
    m = batch * slots
    ring = (n - 1) / n
    out = {"mlp_and_loss_allreduce": 2 * ring * (mlp_params + 1) * 4}   # one fused buffer
    out["ids_allgather"] = ring * n * m * 4
    out["grads_allgather"] = ring * n * m * dim * 4
    if mode == "hybrid_parallel":
        full = n * m * dim * 4
        out["vectors_reducescatter" if native_reduce_scatter else "vectors_allreduce"] = \
            ring * full if native_reduce_scatter else 2 * ring * full
    out["total"] = sum(out.values())
    return out


def alltoall_bytes_per_step(n: int, batch: int, slots: int, dim: int, mlp_params: int) -> Dict[str, float]:
    """Bytes each rank would send per step with an all-to-all exchange (DLRM's model parallelism in the
    paper, TorchRec and NVIDIA's code; not built here, see the README): each of the M = B*S ids goes to
    its owner ((N-1)/N of them leave the rank), each looked-up vector comes back, each gradient goes to
    the owner, and the MLP gradients are all-reduced. Flat in N."""
    if n <= 1:
        return {"total": 0}
    m, away = batch * slots, (n - 1) / n
    out = {"mlp_and_loss_allreduce": 2 * away * (mlp_params + 1) * 4, "ids_alltoall": away * m * 4,
           "vectors_alltoall": away * m * dim * 4, "grads_alltoall": away * m * dim * 4}
    out["total"] = sum(out.values())
    return out


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


class RowShardExchange(nn.Cell):
    """Lookups in a row-sharded table: this rank's `table` float32 [rows_local, D] holds global rows
    [lo, lo + rows_local). (The table is passed in, not kept: a Parameter kept by two cells is renamed.)

    owned(keys int32 [K]) -> (local int32 [K], mask float32 [K, 1]): local row (0 where not owned), 1.0 where owned.
    lookup(table, rows int32 [M]) -> (keys int32 [N*M], local, mask, vectors float32 [M, D] for this rank's rows).
    """

    def __init__(self, lo, rows_local, info, native_reduce_scatter):
        super().__init__()
        self.lo = Tensor(lo, ms.int32)
        self.rows_local = Tensor(rows_local, ms.int32)
        self.rank, self.size = info.rank, info.size
        self.native = native_reduce_scatter
        self.all_gather = ops.AllGather()
        if native_reduce_scatter:
            self.reduce_scatter = ops.ReduceScatter()
        else:
            self.all_reduce = ops.AllReduce()

    def owned(self, keys: Tensor) -> Tuple[Tensor, Tensor]:
        """keys int32 [K] -> (local row int32 [K], 0 where not owned; mask float32 [K, 1], 1.0 where owned)."""
        local = keys - self.lo
        own = ops.logical_and(local >= 0, local < self.rows_local)
        return ops.select(own, local, ops.zeros_like(local)), own.astype(ms.float32).expand_dims(1)

    def lookup(self, table: Tensor, rows: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """rows int32 [M] -> (keys int32 [N*M], local, mask, vectors float32 [M, D] of this rank's rows)."""
        m = rows.shape[0]
        keys = self.all_gather(rows)                                          # [N*M] int32
        local, mask = self.owned(keys)
        part = ops.gather(table, local, 0) * mask                             # [N*M, D]
        if self.native:
            vectors = self.reduce_scatter(part)                               # [M, D]
        else:
            vectors = self.all_reduce(part)[self.rank * m:(self.rank + 1) * m]
        return keys, local, mask, vectors


class ShardedProbability(nn.Cell):
    """Hybrid-parallel inference on one rank: (ids int32 [B, S], dense float32 [B, Dn]) -> click
    probability float32 [B, 1] for this rank's batch; a collective: every rank calls it with equal B."""

    def __init__(self, net, exchange):
        super().__init__()
        self.net = net
        self.exchange = exchange
        self.dim = net.emb_dim
        self.table = net.table

    def construct(self, ids, dense):
        rows = self.net.global_rows(ids).reshape(-1)
        _, _, _, emb = self.exchange.lookup(self.table, rows)
        emb = emb.reshape(ids.shape[0], ids.shape[1], self.dim)
        return ops.sigmoid(self.net.from_embeddings(dense, emb))
