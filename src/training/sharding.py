"""Sharding plans for hybrid parallel (where each embedding table's rows live) and the host-side
routing of a batch's lookups to the ranks that own them.

Kinds, per table t of n_t rows over N ranks:
  row         rows in contiguous blocks: rank k holds the table's rows [k*n_t//N, (k+1)*n_t//N)
  table       the whole table on one rank ("table:K" pins rank K; otherwise the planner places it)
  replicated  the whole table on every rank; its gradient travels in the MLPs' all-reduce, its
              lookups are local (no exchange)
A rank's local table is the concatenation of its segments of the fused table (all tables stacked in
slot order): first every replicated table, then, in slot order, its part of each other table.

The default planner ("auto"), per table: replicated when n_t <= batch_size (all-reducing its
gradient costs about what exchanging B lookups would), row when the table is bigger than a rank's
share of the exchanged tables' rows, table otherwise; table-wise tables go, biggest first, to the
rank with the least (rows share + lookups share); while a rank then holds more than BALANCE x the
mean rows, the biggest of them turns row-wise.

`Router` turns a batch's ids into what the all-to-all exchange sends (src/training/sharded_lookup.py):
the distinct rows asked of each owner, padded to a capacity C that all ranks agree on per step.
"""
import re
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

from src.model_utils.spec import DLRMSpec

PLACEMENTS = ("row", "table", "replicated")
_ENTRY = re.compile(r"^(auto|row|replicated|table)(?::(\d+))?$")


class ShardingError(ValueError):
    """A sharding_plan entry is not valid for the tables and ranks; the message names it."""


@dataclass(frozen=True)
class ShardingPlan:
    """Placement of every table of `spec` over `ranks` ranks: kinds[t] in PLACEMENTS (its placement), owners[t] the rank of a
    table-wise table (-1 for the other kinds)."""
    spec: DLRMSpec
    kinds: Tuple[str, ...]
    owners: Tuple[int, ...]
    ranks: int

    @property
    def table_sizes(self) -> Tuple[int, ...]:
        """Rows of each slot's table (the spec's)."""
        return self.spec.table_sizes

    @property
    def offsets(self) -> np.ndarray:
        """First fused row of each table, int64 [S] (the spec's offsets)."""
        return np.asarray(self.spec.offsets, np.int64)

    def exchanged_lookups(self) -> int:
        """Ids per sample that go through the exchange: those of the tables that are not replicated."""
        return sum(f.max_len for f, k in zip(self.spec.sparse, self.kinds) if k != "replicated")

    def held(self, t: int, rank: int) -> Tuple[int, int]:
        """Rows [lo, hi) of table t (its own numbering) held by `rank`; lo == hi when none."""
        n = self.table_sizes[t]
        if self.kinds[t] == "replicated" or (self.kinds[t] == "table" and self.owners[t] == rank):
            return 0, n
        if self.kinds[t] == "row":
            return rank * n // self.ranks, (rank + 1) * n // self.ranks
        return 0, 0

    def segments(self, rank: int) -> List[Tuple[int, int]]:
        """Fused-table row ranges [lo, hi) held by `rank`, in the order of its local table."""
        off = self.offsets
        order = [t for t in range(len(self.kinds)) if self.kinds[t] == "replicated"] + \
                [t for t in range(len(self.kinds)) if self.kinds[t] != "replicated"]
        segs = []
        for t in order:
            lo, hi = self.held(t, rank)
            if hi > lo:
                segs.append((int(off[t] + lo), int(off[t] + hi)))
        return segs

    def rows_per_rank(self) -> np.ndarray:
        """Rows of every rank's local table, int64 [N] (vectorised: plans for thousands of ranks)."""
        k = np.arange(self.ranks, dtype=np.int64)
        rows = np.full(self.ranks, self.replicated_rows, np.int64)
        for n, kind, owner in zip(self.table_sizes, self.kinds, self.owners):
            if kind == "row":
                rows += (k + 1) * n // self.ranks - k * n // self.ranks
            elif kind == "table":
                rows[owner] += n
        return rows

    @property
    def replicated_rows(self) -> int:
        """Rows every rank holds (the replicated tables together)."""
        return sum(n for n, k in zip(self.table_sizes, self.kinds) if k == "replicated")

    def slots(self, kind_is_replicated: bool) -> List[int]:
        """Slots whose table is (True) or is not (False) replicated, in slot order."""
        return [t for t, k in enumerate(self.kinds) if (k == "replicated") == kind_is_replicated]

    def to_json(self) -> dict:
        """The plan as recorded in checkpoints."""
        return {"ranks": self.ranks, "kinds": list(self.kinds), "owners": list(self.owners)}

    def lines(self) -> List[str]:
        """The plan in words: counts per kind and each rank's rows."""
        count = {k: sum(1 for x in self.kinds if x == k) for k in PLACEMENTS}
        entries = ",".join(k if k != "table" else f"table:{o}" for k, o in zip(self.kinds, self.owners))
        rows = self.rows_per_rank()
        return [f"sharding: {count['row']} row-wise, {count['table']} table-wise, {count['replicated']} replicated "
                f"tables over {self.ranks} ranks; rows per rank {int(rows.min()):,} .. {int(rows.max()):,}",
                f"sharding_plan: [{entries}]"]


def _parse(given: Sequence[str], slots: int, ranks: int) -> List[Tuple[str, int]]:
    """Entries of sharding_plan -> [(kind or 'auto', pinned rank or -1)] per table."""
    entries = list(given) or ["auto"]
    if len(entries) not in (1, slots):
        raise ShardingError(f"sharding_plan has {len(entries)} entries: give one for every table or one per table "
                            f"({slots})")
    out = []
    for i, e in enumerate(entries):
        m = _ENTRY.match(e.strip())
        if not m or (m.group(2) is not None and m.group(1) != "table"):
            raise ShardingError(f"sharding_plan entry {i} = '{e}': expected auto, row, table, table:K or replicated")
        pin = int(m.group(2)) if m.group(2) is not None else -1
        if pin >= ranks:
            raise ShardingError(f"sharding_plan entry {i} = '{e}': rank {pin} does not exist (ranks 0..{ranks - 1})")
        out.append((m.group(1), pin))
    return out * slots if len(out) == 1 else out


BALANCE = 1.1      # auto: table-wise tables turn row-wise, biggest first, until no rank holds more than this x the mean


def _place(sizes: List[int], kinds: List[str], pins: List[int], ranks: int) -> List[int]:
    """Owners of the table-wise tables (pinned ones kept): biggest first, each to the rank with the least
    (rows share + lookups share) after taking it. -1 for the other kinds."""
    owners = [p if k == "table" else -1 for k, p in zip(kinds, pins)]
    load, lookups = np.zeros(ranks), np.zeros(ranks)         # rows held, lookups served per sample
    for t, k in enumerate(kinds):
        if k == "row":
            load += sizes[t] / ranks
            lookups += 1.0 / ranks
        elif k == "table" and owners[t] >= 0:
            load[owners[t]] += sizes[t]
            lookups[owners[t]] += 1
    total_rows = max(1.0, float(sum(n for n, k in zip(sizes, kinds) if k != "replicated")))
    for t in sorted((t for t, k in enumerate(kinds) if k == "table" and owners[t] < 0), key=lambda t: -sizes[t]):
        r = int(np.argmin((load + sizes[t]) / total_rows + (lookups + 1) / len(sizes)))
        owners[t] = r
        load[r] += sizes[t]
        lookups[r] += 1
    return owners


def make_plan(spec: DLRMSpec, ranks: int, entries: Sequence[str], batch: int) -> ShardingPlan:
    """The plan of `entries` (the sharding_plan key) for the tables of `spec` over `ranks` ranks at `batch` samples
    per rank."""
    sizes = list(spec.table_sizes)
    parsed = _parse(entries, len(sizes), ranks)
    exchanged = sum(n for n, (k, _) in zip(sizes, parsed) if k != "replicated" and not (k == "auto" and n <= batch))
    kinds = [k if k != "auto" else "replicated" if n <= batch else "row" if n * ranks > exchanged else "table"
             for n, (k, _) in zip(sizes, parsed)]
    pins = [p for _, p in parsed]
    while True:
        plan = ShardingPlan(spec=spec, kinds=tuple(kinds), owners=tuple(_place(sizes, kinds, pins, ranks)),
                            ranks=ranks)
        held = plan.rows_per_rank() - plan.replicated_rows
        movable = [t for t, (k, _) in enumerate(parsed) if k == "auto" and kinds[t] == "table"]
        if not movable or held.max() <= BALANCE * held.mean():
            return plan
        kinds[max(movable, key=lambda t: sizes[t])] = "row"


@dataclass
class Routed:
    """One batch's lookups, routed on the host (before the capacity is agreed).
    rep_rows int32 [B, L_rep]: local rows of the replicated slots' lookups.
    owner int32 [U], pos int32 [U], local int32 [U]: each distinct exchanged row's owner, place in the
    owner's send block, and row in the owner's local table; which int32 [B*L_ex]: each exchanged
    lookup's distinct row. need: the largest send block (rows asked of one owner).
    ids int32 [B, L]: the batch's ids, which pool the lookups of multi_hot slots ([1, 1] unused without them).
    A multi_hot slot's pad (-1) is looked up as its slot's row 0 and weighted 0 by the pooling."""
    rep_rows: np.ndarray
    owner: np.ndarray
    pos: np.ndarray
    local: np.ndarray
    which: np.ndarray
    need: int
    ids: np.ndarray


class Router:
    """Host-side routing for one rank under a plan (numpy; runs in the data thread). It works on the columns of
    the ids input (one per categorical slot, max_len per multi_hot slot): rep_cols and ex_cols are the columns of
    the replicated and of the exchanged slots."""

    def __init__(self, plan: ShardingPlan, rank: int):
        self.plan, self.rank, self.ranks = plan, rank, plan.ranks
        off = plan.offsets
        col_slot = np.asarray(plan.spec.lookup_slots, np.int64)
        rep_slots = plan.slots(True)
        self.rep_cols = [c for c, t in enumerate(col_slot) if t in rep_slots]
        self.ex_cols = [c for c, t in enumerate(col_slot) if t not in rep_slots]
        self.pooled = plan.spec.pooled
        local, rep_off = 0, {}
        for t in rep_slots:                                              # replicated tables come first locally
            rep_off[t] = local
            local += plan.table_sizes[t]
        self.rep_offsets = np.array([rep_off[t] for t in col_slot[self.rep_cols]], np.int32)[None, :]
        self.ex_offsets = off[col_slot[self.ex_cols]][None, :]
        starts, owners, local_starts = [], [], []
        for r in range(self.ranks):                                      # every exchanged segment of every rank
            pos = 0
            for lo, hi in plan.segments(r):
                if not self._replicated_segment(lo):
                    starts.append(lo)
                    owners.append(r)
                    local_starts.append(pos)
                pos += hi - lo
        order = np.argsort(starts, kind="stable")
        self.seg_start = np.asarray(starts, np.int64)[order]
        self.seg_owner = np.asarray(owners, np.int32)[order]
        self.seg_local = np.asarray(local_starts, np.int64)[order]

    def _replicated_segment(self, lo: int) -> bool:
        t = int(np.searchsorted(self.plan.offsets, lo, "right") - 1)
        return self.plan.kinds[t] == "replicated"

    def route(self, ids: np.ndarray) -> Routed:
        """ids int32 [B, L] (per-slot ids, -1 pads in multi_hot slots) -> Routed."""
        raw = ids
        if self.pooled:
            ids = np.maximum(ids, 0)
        rep = (ids[:, self.rep_cols] + self.rep_offsets).astype(np.int32) if self.rep_cols else \
            np.zeros((len(ids), 1), np.int32)                            # unused placeholder
        rows = (ids[:, self.ex_cols].astype(np.int64) + self.ex_offsets).reshape(-1)
        uniq, which = np.unique(rows, return_inverse=True)
        seg = np.searchsorted(self.seg_start, uniq, "right") - 1
        owner = self.seg_owner[seg]
        local = (self.seg_local[seg] + uniq - self.seg_start[seg]).astype(np.int32)
        counts = np.bincount(owner, minlength=self.ranks)
        order = np.argsort(owner, kind="stable")
        pos = np.empty(len(uniq), np.int32)
        pos[order] = np.arange(len(uniq)) - np.repeat(np.cumsum(counts) - counts, counts)
        return Routed(rep, owner, pos, local, which.astype(np.int32).reshape(-1), int(counts.max(initial=0)),
                      raw if self.pooled else np.zeros((1, 1), np.int32))

    def capacity(self, need: int, batch: int) -> int:
        """The send-block size for a step whose largest block (over all ranks) is `need` rows: rounded up to a
        multiple of a power of two near an eighth of the mean block, so that only a few shapes are compiled."""
        mean = batch * len(self.ex_cols) / self.ranks
        q = max(8, 1 << int(np.floor(np.log2(max(1.0, mean / 8)))))
        return max(q, -(-need // q) * q)

    def pack(self, r: Routed, capacity: int) -> Tuple[np.ndarray, np.ndarray]:
        """(send int32 [N*C]: block k = the local rows asked of rank k, -1 padding; inverse int32 [B*L_ex]:
        each exchanged lookup's place in the [N*C] vectors that come back)."""
        send = np.full(self.ranks * capacity, -1, np.int32)
        place = r.owner.astype(np.int64) * capacity + r.pos
        send[place] = r.local
        inverse = place.astype(np.int32)[r.which]
        return send, inverse if len(inverse) else np.zeros(1, np.int32)   # [1] unused placeholder when L_ex = 0

