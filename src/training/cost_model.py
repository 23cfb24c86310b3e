"""What a layout sends per step, and which collective each backend uses for the hybrid exchange.

The exchange of hybrid_parallel is an all-to-all. Which primitive carries it depends on what MindSpore 2.10
registers for the backend (the evidence is in docs/distributed.md, whose table a test compares with
COLLECTIVES and EXCHANGE below):
  Ascend  ops.AlltoAll (HCCL): one collective per exchange.
  GPU     N-1 rounds of ops.AllGather (NCCL): the 2.10 GPU plugin has no kernel for AlltoAll (its NCCL
          point-to-point kernel takes only AllToAllv and NeighborExchange, and the pass that makes AllToAllv
          matches the auto-parallel AllToAll primitive, not ops.AlltoAll).
  CPU     N-1 rounds of ops.AllGather (MindSpore's mccl): no AlltoAll kernel (run here).
No MindSpore import: the memory planner and train.py's checks use this before MindSpore is loaded.
"""
from typing import Dict, Optional, Tuple

from src.model_utils.parallel_mode import ParallelMode
from src.model_utils.spec import BYTES, ID_BYTES

# Every collective the code can pick, per backend (data parallel's gathers, the MLPs' AllReduce, the hybrid
# exchange, the capacity agreement, the distributed evaluation and the closing barrier).
COLLECTIVES: Dict[str, Tuple[str, ...]] = {"CPU": ("AllReduce", "AllGather"), "GPU": ("AllReduce", "AllGather"),
                                           "Ascend": ("AllReduce", "AllGather", "AlltoAll")}
# The primitive of the hybrid all-to-all exchange, per backend.
EXCHANGE: Dict[str, str] = {"CPU": "AllGather", "GPU": "AllGather", "Ascend": "AlltoAll"}


def exchange_is_alltoall(device_target: str) -> bool:
    """True where the hybrid exchange is one AlltoAll (Ascend); False where it is N-1 AllGather rounds."""
    return EXCHANGE[device_target] == "AlltoAll"


def bytes_per_step(mode: str, n: int, batch: int, slots: int, dim: int, mlp_params: int,
                   exchanged_slots: Optional[int] = None, replicated_rows: int = 0,
                   native_alltoall: bool = True) -> Dict[str, float]:
    """Bytes each rank sends per training step, float32 values and int32 ids, ring algorithms (AllGather
    sends (N-1)/N of the gathered tensor, AllReduce twice that of its input).
    hybrid_parallel: an all-to-all sends (N-1)/N of its [N*C] buffer; taken at C = B*S_ex/N (every lookup
    distinct and the owners balanced: duplicates make it less, skew more), so it is flat in N. Emulated by
    N-1 AllGathers (native_alltoall=False: CPU and GPU) it is N-1 times that. Replicated tables' gradients [R_rep, D] ride in
    the MLPs' all-reduce."""
    if n <= 1:
        return {"total": 0}
    ring = (n - 1) / n
    if not ParallelMode(mode).shards_tables:
        m = batch * slots
        out = {"mlp_and_loss_allreduce": 2 * ring * (mlp_params + 1) * BYTES, "ids_allgather": ring * n * m * ID_BYTES,
               "grads_allgather": ring * n * m * dim * BYTES}
        out["total"] = sum(out.values())
        return out
    m = batch * (slots if exchanged_slots is None else exchanged_slots)
    sent = ring * m * (1 if native_alltoall else n - 1)              # lookups that leave the rank, per tensor
    how = "alltoall" if native_alltoall else "alltoall_as_allgathers"
    out = {"mlp_and_loss_allreduce": 2 * ring * (mlp_params + replicated_rows * dim + 1) * BYTES,
           f"ids_{how}": sent * ID_BYTES, f"vectors_{how}": sent * dim * BYTES, f"grads_{how}": sent * dim * BYTES}
    out["total"] = sum(out.values())
    return out


