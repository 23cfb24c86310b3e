"""Per-rank memory and exchange bytes of a training layout, computed before anything is allocated.

    python train.py --plan_only=True --rank_size=64 --categorical_feature_sizes='[...]' ...

`estimate(cfg, spec, ranks)` gives, for parallel_mode and N ranks, what each rank holds:
  table       its embedding rows x dim x 4 B (hybrid_parallel: the rows the sharding plan gives the fullest
              rank, src/training/sharding.py; otherwise all R)
  optimizer   row-wise accumulators (adagrad, adam: 4 B per local row) + MLP state (adagrad 1x, adam 2x)
  mlp         MLP and interaction parameters and their gradients
  runtime     RUNTIME_BYTES (Python + MindSpore) + activations (ACTIVATION_FACTOR x 4 B x the widths of one
              sample, per sample of the batch) + exchange buffers of B x S x D x 4 B each, N times that
              for data parallel and for hybrid on CPU and GPU (where the all-to-all is AllGather rounds)
              (EXCHANGE_BUFFERS of them: hybrid 10, data parallel 3)
and the bytes each rank sends per step (`src/training/cost_model.py: bytes_per_step`). The constants were
fitted on this machine's measured peaks (`bash scripts/run_benchmark.sh parallel`, README
"Distributed training"): 1 process, 2 hybrid and 2 data-parallel ranks, Kaggle tables, batch 1024 to
16384 per rank, all within 5%.
`check_budget` stops a run whose ranks would not fit, saying how many ranks or how much memory would.
"""
import os
from dataclasses import dataclass
from typing import Dict, List, Optional

from src.model_utils.parallel_mode import ParallelMode
from src.model_utils.spec import BYTES, DLRMSpec
from src.training.cost_model import bytes_per_step, exchange_is_alltoall
from src.training.sharding import ShardingPlan, make_plan

RUNTIME_BYTES = 500 << 20        # Python + MindSpore + the data pipeline, measured 0.47-0.52 GB here
ACTIVATION_FACTOR = 2            # float32 activations and gradients per unit of width (~36 KB a sample, Kaggle)
EXCHANGE_BUFFERS = {ParallelMode.HYBRID: 10, ParallelMode.DATA: 3}   # [N*M, D] float32 tensors alive in a step


class MemoryBudgetError(ValueError):
    """A rank would need more memory than memory_budget_gb allows."""


@dataclass
class RankMemory:
    """What one rank holds (bytes) and sends per step, for one layout."""
    mode: str
    ranks: int
    batch: int                  # per rank
    rows: int                   # all tables together
    rows_per_rank: int
    table: int
    optimizer: int
    mlp: int
    runtime: int
    exchange: Dict[str, float]  # bytes sent per rank per step, by collective
    sharding: Optional[ShardingPlan] = None

    @property
    def total(self) -> int:
        """Expected peak bytes of one rank."""
        return self.table + self.optimizer + self.mlp + self.runtime

    def lines(self) -> List[str]:
        """The plan in words, one line each."""
        gib = 2 ** 30
        head = (f"plan: {self.mode}, {self.ranks} rank(s), batch {self.batch} per rank; {self.rows:,} table rows, "
                f"{self.rows_per_rank:,} per rank")
        mem = (f"per rank: table {self.table / gib:.2f} GB + optimizer state {self.optimizer / gib:.2f} GB + "
               f"MLPs {self.mlp / gib:.3f} GB + runtime {self.runtime / gib:.2f} GB = {self.total / gib:.2f} GB")
        sent = ", ".join(f"{k} {v / 2 ** 20:,.1f} MB" for k, v in self.exchange.items() if k != "total")
        lines = [head] + (self.sharding.lines() if self.sharding else []) + [mem]
        return lines + [f"bytes sent per rank per step: {self.exchange['total'] / 2 ** 20:,.1f} MB"
                        + (f" ({sent})" if sent else "")]

    def step_seconds(self, compute_per_sample: float, link_bytes_per_s: float) -> float:
        """Modelled step time: batch x compute seconds per sample + bytes sent / link bandwidth (no overlap)."""
        return self.batch * compute_per_sample + self.exchange["total"] / link_bytes_per_s


def estimate(cfg, spec: DLRMSpec, ranks: int, native_alltoall: Optional[bool] = None) -> RankMemory:
    """The memory and traffic of one rank for cfg.parallel_mode over `ranks` ranks at cfg.batch_size per rank, for
    the model `spec` (see module docstring). native_alltoall: default, the device target's exchange (Ascend:
    AlltoAll; CPU and GPU: AllGather rounds)."""
    dim, batch = spec.emb_dim, cfg.batch_size
    native = exchange_is_alltoall(cfg.device_target) if native_alltoall is None else native_alltoall
    mode = ParallelMode(cfg.parallel_mode) if ranks > 1 else ParallelMode.STAND_ALONE
    sp = make_plan(spec, ranks, cfg.sharding_plan, batch) if mode.shards_tables else None
    local = int(sp.rows_per_rank().max()) if sp else spec.total_rows
    exchanged = sp.exchanged_lookups() if sp else spec.lookups
    spread = 1 if (sp and native) else ranks
    exchange_buffers = EXCHANGE_BUFFERS.get(mode, 0) * spec.vector_bytes(spread * batch * exchanged)
    sent = bytes_per_step(mode, ranks, batch, spec.lookups, dim, spec.mlp_params, exchanged,
                          sp.replicated_rows if sp else 0, native)
    activations = batch * BYTES * ACTIVATION_FACTOR * spec.activation_width()
    return RankMemory(mode, ranks, batch, spec.total_rows, local, spec.table_bytes(local), spec.state_bytes(local),
                    2 * spec.mlp_bytes, RUNTIME_BYTES + activations + exchange_buffers, sent, sp)


def available_memory() -> int:
    """MemAvailable of this machine in bytes (Linux), the default budget."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise OSError("no MemAvailable in /proc/meminfo")


def check_budget(cfg, spec: DLRMSpec, ranks: int, budget: int) -> RankMemory:
    """The plan for `ranks`; raises MemoryBudgetError naming the ranks or memory that would fit when a rank
    would need more than `budget` bytes."""
    p = estimate(cfg, spec, ranks)
    if p.total <= budget:
        return p
    gib = 2 ** 30
    advice = f"give each rank at least {p.total / gib:.2f} GB (memory_budget_gb)"
    if ParallelMode(cfg.parallel_mode).shards_tables:
        fits = next((n for n in (2 ** k for k in range(1, 21)) if estimate(cfg, spec, n).total <= budget), None)
        advice += f", or use {fits} ranks of hybrid_parallel" if fits else ", or shrink the tables (max_ind_range)"
    else:
        advice += ", or use hybrid_parallel (table rows split across ranks)"
    raise MemoryBudgetError(f"each of the {ranks} rank(s) would need {p.total / gib:.2f} GB ({'; '.join(p.lines()[1:2])}) "
                            f"but memory_budget_gb allows {budget / gib:.2f} GB: {advice}")


def budget_bytes(cfg) -> int:
    """memory_budget_gb in bytes, or (0) this machine's available memory divided among its ranks
    (DLRM_LOCAL_RANKS, set by the distributed launchers)."""
    if cfg.memory_budget_gb:
        return int(cfg.memory_budget_gb * 2 ** 30)
    return available_memory() // max(1, int(os.environ.get("DLRM_LOCAL_RANKS", "1")))
