"""Hybrid-parallel shard sets: CKPT_DIR/rank_K/PREFIX-E_S.safetensors holds rank K's rows of the row-sharded
parameters (the fused-table row ranges `meta.shard.segments`, one after another, as its sharding plan placed them)
plus the replicated MLPs. `merge` joins a complete set (every rank's shard of one step of one training run) into the
single-device file CKPT_DIR/PREFIX-E_S.safetensors that eval.py, export.py and any number of ranks, under any plan,
load; `load_rows` cuts any checkpoint to the segments of a rank of another layout (what a resume starts from is
retention.newest's choice: the newest checkpoint of the most recent run, a merged file or a complete shard set)."""
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from src.training.checkpoint.file_format import EXT, CheckpointError, read, save
from src.training.checkpoint.retention import complete_set, free_path, load_shard_info, shard_sets


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


def merge(ckpt_dir: str, prefix: str, step: Optional[int] = None, run: Optional[str] = None) -> str:
    """Join the complete shard set of `step` (default: the newest) of the training run `run` (default: the most
    recent) into CKPT_DIR/PREFIX-E_S.safetensors (tagged when another run's file has that name)."""
    found = shard_sets(ckpt_dir, prefix)
    sets = {key: whole for key, ranks in found.items() if (whole := complete_set(ranks))}
    if not sets:
        raise CheckpointError(f"no complete set of shards '{prefix}-*{EXT}' in {ckpt_dir}/rank_*/")
    if run is None:                                      # the run that wrote a complete set last
        run = max(sets, key=lambda key: max(i.written for i in found[key].values()))[0]
    steps = sorted(s for r, s in sets if r == run)
    if not steps or (step is not None and step not in steps):
        raise CheckpointError(f"no complete shard set at step {step} of run {run} in {ckpt_dir}/rank_*/ "
                              f"(complete: {sorted(sets)})")
    step = steps[-1] if step is None else step
    arrays, position, sharded, model = _join(sets[(run, step)])
    m = re.match(rf"^{re.escape(prefix)}-(\d+)_", os.path.basename(sets[(run, step)][0]))
    path = free_path(ckpt_dir, prefix, int(m.group(1)), step, run)
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


def merge_best(ckpt_dir: str, prefix: str, run: str) -> Optional[str]:
    """Join the hybrid-parallel ranks' best-checkpoint shards of the run `run` (CKPT_DIR/rank_K/PREFIX-best*) into
    CKPT_DIR's best checkpoint; None when the run saved none."""
    from src.training.checkpoint.header import describe
    from src.training.checkpoint.retention import best_files, best_path
    ranks = {}
    for d in sorted(os.listdir(ckpt_dir)):
        m = re.fullmatch(r"rank_(\d+)", d)
        for path in best_files(os.path.join(ckpt_dir, d), prefix) if m else ():
            if describe(path).run_id == run:
                ranks[int(m.group(1))] = path
    if not ranks:
        return None
    arrays, position, sharded, model = _join(ranks)
    path = best_path(ckpt_dir, prefix, run)
    save(path, sorted(arrays.items()), position, row_sharded=sharded, model=model)
    return path
