"""Per-rank memory and exchange bytes of a training layout, computed before anything is allocated.

    python train.py --plan_only=True --rank_size=64 --categorical_feature_sizes='[...]' ...

`plan(cfg, table_sizes, ranks)` gives, for parallel_mode and N ranks, what each rank holds:
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
from typing import Dict, List, Optional, Sequence

from src.data.packed_format import METADATA, load_metadata, table_sizes_for
from src.training.cost_model import bytes_per_step, exchange_is_alltoall
from src.training.sharding import ShardingPlan, make_plan

RUNTIME_BYTES = 500 << 20        # Python + MindSpore + the data pipeline, measured 0.47-0.52 GB here
ACTIVATION_FACTOR = 2            # float32 activations and gradients per unit of width (~36 KB a sample, Kaggle)
EXCHANGE_BUFFERS = {"hybrid_parallel": 10, "data_parallel": 3}   # [N*M, D] float32 tensors alive in a step


class MemoryBudgetError(ValueError):
    """A rank would need more memory than memory_budget_gb allows."""


def interaction_width(cfg, slots: int) -> int:
    """Width F of the interaction output for the config's interaction_op (the over arch's input)."""
    dx, dim = cfg.bottom_mlp_args[-1], cfg.data_emb_dim
    if cfg.interaction_op == "dot":
        vectors = slots + 1
        return dx + vectors * (vectors - 1) // 2 + (vectors if cfg.interaction_itself else 0)
    return dx + slots * dim


def _dense_params(widths: Sequence[int]) -> int:
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


def dense_params(cfg, slots: int) -> int:
    """Parameters of the bottom MLP, the top MLP and (dcn) the cross layers: everything but the table."""
    width = interaction_width(cfg, slots)
    n = _dense_params([cfg.dense_dim] + list(cfg.bottom_mlp_args)) + _dense_params([width] + list(cfg.top_mlp_args))
    if cfg.interaction_op == "dcn":
        f = cfg.bottom_mlp_args[-1] + slots * cfg.data_emb_dim
        per_layer = (2 * f * cfg.dcn_low_rank_dim if cfg.dcn_low_rank_dim else f * f) + f
        n += cfg.dcn_num_layers * per_layer
    return n


@dataclass
class RankPlan:
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


def plan(cfg, table_sizes: Sequence[int], ranks: int, native_alltoall: Optional[bool] = None) -> RankPlan:
    """The memory and traffic of one rank for cfg.parallel_mode over `ranks` ranks (see module docstring).
    native_alltoall: default, the device target's exchange (Ascend: AlltoAll; CPU and GPU: AllGather rounds)."""
    slots, dim, batch = len(table_sizes), cfg.data_emb_dim, cfg.batch_size
    native = exchange_is_alltoall(cfg.device_target) if native_alltoall is None else native_alltoall
    rows = int(sum(table_sizes))
    mode = cfg.parallel_mode if ranks > 1 else "stand_alone"
    sp = make_plan(table_sizes, ranks, cfg.sharding_plan, batch) if mode == "hybrid_parallel" else None
    local = int(sp.rows_per_rank().max()) if sp else rows
    mlp = dense_params(cfg, slots)
    opt_rows = local if cfg.optimizer in ("adagrad", "adam") else 0
    opt_mlp = {"adagrad": mlp, "adam": 2 * mlp}.get(cfg.optimizer, 0)
    width = interaction_width(cfg, slots)
    per_sample = 4 * ACTIVATION_FACTOR * (sum(cfg.bottom_mlp_args) + sum(cfg.top_mlp_args) + 3 * width
                                          + 3 * slots * dim + max(list(cfg.bottom_mlp_args) + list(cfg.top_mlp_args) + [width]))
    exchanged = len(sp.slots(False)) if sp else slots
    spread = 1 if (sp and native) else ranks
    exchange_buffers = EXCHANGE_BUFFERS.get(mode, 0) * spread * batch * exchanged * dim * 4
    sent = bytes_per_step(mode, ranks, batch, slots, dim, mlp, exchanged, sp.replicated_rows if sp else 0, native)
    return RankPlan(mode, ranks, batch, rows, local, 4 * local * dim, 4 * (opt_rows + opt_mlp), 2 * 4 * mlp,
                    RUNTIME_BYTES + batch * per_sample + exchange_buffers, sent, sp)


def available_memory() -> int:
    """MemAvailable of this machine in bytes (Linux), the default budget."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise OSError("no MemAvailable in /proc/meminfo")


def check_budget(cfg, table_sizes: Sequence[int], ranks: int, budget: int) -> RankPlan:
    """The plan for `ranks`; raises MemoryBudgetError naming the ranks or memory that would fit when a rank
    would need more than `budget` bytes."""
    p = plan(cfg, table_sizes, ranks)
    if p.total <= budget:
        return p
    gib = 2 ** 30
    advice = f"give each rank at least {p.total / gib:.2f} GB (memory_budget_gb)"
    if cfg.parallel_mode == "hybrid_parallel":
        fits = next((n for n in (2 ** k for k in range(1, 21)) if plan(cfg, table_sizes, n).total <= budget), None)
        advice += f", or use {fits} ranks of hybrid_parallel" if fits else ", or shrink the tables (max_ind_range)"
    else:
        advice += ", or use hybrid_parallel (table rows split across ranks)"
    raise MemoryBudgetError(f"each of the {ranks} rank(s) would need {p.total / gib:.2f} GB ({'; '.join(p.lines()[1:2])}) "
                            f"but memory_budget_gb allows {budget / gib:.2f} GB: {advice}")


def plan_table_sizes(cfg) -> List[int]:
    """Table sizes to plan for: the dataset's (metadata.json, checked against the config), else
    categorical_feature_sizes; neither is an error naming both keys."""
    if cfg.dataset_path and os.path.isfile(os.path.join(cfg.dataset_path, METADATA)):
        return table_sizes_for(cfg, load_metadata(cfg.dataset_path, check_files=False))
    if cfg.categorical_feature_sizes:
        return list(cfg.categorical_feature_sizes)
    raise ValueError(f"no table sizes to plan for: dataset_path '{cfg.dataset_path}' holds no {METADATA} and "
                     f"categorical_feature_sizes is empty; set one of them")


def budget_bytes(cfg) -> int:
    """memory_budget_gb in bytes, or (0) this machine's available memory divided among its ranks
    (DLRM_LOCAL_RANKS, set by the distributed launchers)."""
    if cfg.memory_budget_gb:
        return int(cfg.memory_budget_gb * 2 ** 30)
    return available_memory() // max(1, int(os.environ.get("DLRM_LOCAL_RANKS", "1")))
