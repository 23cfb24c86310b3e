"""Hybrid-parallel shard sets: CKPT_DIR/rank_K/PREFIX-E_S.safetensors holds rank K's rows of the row-sharded
parameters (the fused-table row ranges `meta.shard.segments`, one after another, as its sharding plan placed them)
plus the replicated MLPs. `merge` joins a complete set into the single-device file CKPT_DIR/PREFIX-E_S.safetensors
that eval.py, export.py and any number of ranks, under any plan, load; `load_rows` cuts any checkpoint to the
segments of a rank of another layout; `newest` finds what a resume starts from."""
import glob
import json
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from src.training.checkpoint.file_format import EXT, SHARD, CheckpointError, read, save
from src.training.checkpoint.retention import checkpoints_by_step


def shard_sets(ckpt_dir: str, prefix: str) -> Dict[int, Dict[int, str]]:
    """{global step: {rank: shard file}} over CKPT_DIR/rank_*/."""
    sets = {}
    for d in sorted(glob.glob(os.path.join(ckpt_dir, "rank_*"))):
        m = re.fullmatch(r"rank_(\d+)", os.path.basename(d))
        if not m:
            continue
        for step, path in checkpoints_by_step(d, prefix):
            sets.setdefault(step, {})[int(m.group(1))] = path
    return sets


def _complete(ranks):
    """The rank -> file map of one step if it is a whole set (ranks 0..size-1 of one run), else None."""
    sizes = {load_shard_info(p)["size"] for p in ranks.values()}
    if len(sizes) != 1:
        return None
    size = sizes.pop()
    return {r: ranks[r] for r in range(size)} if set(ranks) >= set(range(size)) else None


def load_shard_info(path: str) -> dict:
    """meta.shard.* of a shard file ({rows, rank, size, segments}), read from the safetensors header and
    those small values only (a shard of the Kaggle table is ~1 GB; this reads a few hundred bytes)."""
    import struct
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
            info = {}
            for k in SHARD + ("segments",):
                lo, hi = header[f"meta.shard.{k}"]["data_offsets"]
                f.seek(8 + n + lo)
                values = np.frombuffer(f.read(hi - lo), "<i8")
                info[k] = [tuple(int(v) for v in seg) for seg in values.reshape(-1, 2)] if k == "segments" \
                    else int(values[0])
    except (OSError, ValueError, KeyError, struct.error) as exc:
        raise CheckpointError(f"'{path}' is not a checkpoint shard (meta.shard.* unreadable: {exc})") from None
    return info


def newest(ckpt_dir: str, prefix: str) -> Optional[Tuple[str, object]]:
    """The newest checkpoint by global step: ("full", path) or ("shards", {rank: path}), or None.
    At equal steps the merged single file wins."""
    best = None
    for step, path in checkpoints_by_step(ckpt_dir, prefix):
        best = (step, 1, ("full", path))
    for step, ranks in sorted(shard_sets(ckpt_dir, prefix).items()):
        whole = _complete(ranks)
        if whole and (best is None or (step, 0) > best[:2]):
            best = (step, 0, ("shards", whole))
    return best[2] if best else None


def _join(shards: Dict[int, str]) -> Tuple[Dict[str, np.ndarray], dict, List[str], dict]:
    """Load a complete shard set {rank: file} -> (arrays of the whole model, position, row-sharded names,
    model description). Rows held by several ranks (replicated tables) are taken from the first."""
    arrays, position, full, covered = None, None, {}, None
    for rank in sorted(shards):
        a, pos, sharded, model = read(shards[rank])
        info = pos.pop("shard")
        if info["rank"] != rank:
            raise CheckpointError(f"shard '{shards[rank]}' is rank {info['rank']}'s; expected rank {rank}")
        if arrays is None:
            position, covered = pos, np.zeros(info["rows"], bool)
        for k in sharded:
            part = a.pop(k)
            whole = full.setdefault(k, np.zeros((info["rows"],) + part.shape[1:], part.dtype))
            at = 0
            for lo, hi in info["segments"]:
                whole[lo:hi] = part[at:at + hi - lo]
                at += hi - lo
        for lo, hi in info["segments"]:
            covered[lo:hi] = True
        if arrays is None:
            arrays = a
            continue
        for k, v in a.items():
            if k not in arrays or arrays[k].shape != v.shape or np.max(np.abs(arrays[k] - v), initial=0.0) > 1e-6:
                raise CheckpointError(f"replicated parameter '{k}' differs between rank 0 and rank {rank} "
                                      f"('{shards[rank]}'): the ranks diverged")
        if pos != position:
            raise CheckpointError(f"'{shards[rank]}' is at {pos}, rank 0 at {position}")
    if not covered.all():
        raise CheckpointError(f"the shards in {os.path.dirname(os.path.dirname(shards[0]))}/rank_*/ leave "
                              f"{int((~covered).sum()):,} of {len(covered):,} table rows uncovered (first: row "
                              f"{int(np.argmin(covered))})")
    arrays.update(full)
    return arrays, position, sorted(full), model


def merge(ckpt_dir: str, prefix: str, step: Optional[int] = None) -> str:
    """Join the complete shard set of `step` (default: the newest) into CKPT_DIR/PREFIX-E_S.safetensors."""
    sets = {s: _complete(r) for s, r in shard_sets(ckpt_dir, prefix).items()}
    sets = {s: r for s, r in sets.items() if r}
    if not sets:
        raise CheckpointError(f"no complete set of shards '{prefix}-*{EXT}' in {ckpt_dir}/rank_*/")
    if step is None:
        step = max(sets)
    if step not in sets:
        raise CheckpointError(f"no complete shard set at step {step} in {ckpt_dir}/rank_*/ (complete: {sorted(sets)})")
    arrays, position, sharded, model = _join(sets[step])
    path = os.path.join(ckpt_dir, os.path.basename(sets[step][0]))
    save(path, sorted(arrays.items()), position, row_sharded=sharded, model=model or None)
    return path


def load_rows(source: Tuple[str, object], segments: Optional[Sequence[Tuple[int, int]]] = None
              ) -> Tuple[Dict[str, np.ndarray], dict, str, dict]:
    """(arrays, position, description, model) of a checkpoint from `newest`, with the row-sharded parameters
    cut to the fused-table row ranges `segments`, one after another (None: all rows). A shard set with a
    shard of exactly these segments is read from that file alone; any other set is joined first (resuming
    with another number of ranks or another sharding plan)."""
    kind, what = source
    if kind == "shards":
        for path in what.values():
            if segments is not None and load_shard_info(path)["segments"] == [tuple(s) for s in segments]:
                arrays, position, _, model = read(path)
                position.pop("shard")
                return arrays, position, path, model
        arrays, position, sharded, model = _join(what)
        desc = f"{len(what)} shards in {os.path.dirname(os.path.dirname(what[0]))}/rank_*/"
    else:
        arrays, position, sharded, model = read(what)
        position.pop("shard", None)
        desc = what
    if segments is not None:
        for k in sharded:
            arrays[k] = np.concatenate([arrays[k][lo:hi] for lo, hi in segments])
    return arrays, position, desc, model
