"""Checkpoint files in a folder: their names, which training run wrote each, retention, and resolving a file or folder
argument to one file. Hybrid-parallel ranks write their shards into CKPT_DIR/rank_K/.

Names are PREFIX-EPOCH_STEP.safetensors. Several training runs may share a folder: every file records its run (id,
start, time written; header.py reads it), so
  * "the newest checkpoint of a folder" is the newest of the most recent run (the run that wrote last), by the time
    it was written, never the highest step across runs;
  * retention keeps the newest `keep_checkpoint_max` of the current run and never touches another run's files;
  * a run never replaces another run's file of the same name: it writes PREFIX-EPOCH_STEP-rTAG.safetensors
    instead (TAG: the end of its run id).
"""
import glob
import os
import re
from typing import Callable, Dict, List, Optional, Tuple

from src.training.checkpoint.header import EXT, CheckpointError, CheckpointInfo, describe

MERGE_COMMAND = "python -m src.training.checkpoint merge"
BEST = "best"
TAG_CHARS = 6                      # the end of a run id that tells two runs' files of the same step apart


def ckpt_name(prefix: str, epoch: int, step: int, tag: str = "") -> str:
    """'dlrm', 1, 500 -> 'dlrm-1_500.safetensors' ('dlrm-1_500-r3fa2c1.safetensors' with tag '3fa2c1')."""
    return f"{prefix}-{epoch}_{step}{f'-r{tag}' if tag else ''}{EXT}"


def _name_pattern(prefix: str) -> "re.Pattern":
    return re.compile(rf"^{re.escape(prefix)}-(\d+)_(\d+)(?:-r[0-9a-z]+)?{re.escape(EXT)}$")


def best_name(prefix: str, tag: str = "") -> str:
    """'dlrm' -> 'dlrm-best.safetensors' ('dlrm-best-r3fa2c1.safetensors' with tag '3fa2c1'): a run's best checkpoint
    by validation logloss (keep_best), parameters only."""
    return f"{prefix}-{BEST}{f'-r{tag}' if tag else ''}{EXT}"


def best_files(ckpt_dir: str, prefix: str) -> List[str]:
    """The best checkpoints of `prefix` in ckpt_dir (every run's)."""
    pat = re.compile(rf"^{re.escape(prefix)}-{BEST}(?:-r[0-9a-z]+)?{re.escape(EXT)}$")
    return sorted(p for p in glob.glob(os.path.join(glob.escape(ckpt_dir), f"{glob.escape(prefix)}-{BEST}*{EXT}"))
                  if pat.match(os.path.basename(p)))


def checkpoints_by_step(ckpt_dir: str, prefix: str) -> List[Tuple[int, str]]:
    """[(global step, path)] of the checkpoints of `prefix` in ckpt_dir, lowest step first (step from the name; every
    run's files)."""
    pat = _name_pattern(prefix)
    found = []
    for path in glob.glob(os.path.join(glob.escape(ckpt_dir), f"{glob.escape(prefix)}-*{EXT}")):
        m = pat.match(os.path.basename(path))
        if m:
            found.append((int(m.group(2)), path))
    return sorted(found)


def list_checkpoints(ckpt_dir: str, prefix: str) -> List[str]:
    """Checkpoints of `prefix` in ckpt_dir, lowest step first (by global step in the name; every run's files)."""
    return [p for _, p in checkpoints_by_step(ckpt_dir, prefix)]


def described(ckpt_dir: str, prefix: str) -> List[CheckpointInfo]:
    """What every checkpoint of `prefix` in ckpt_dir says about itself (run, step, model), from the headers."""
    return [describe(p) for p in list_checkpoints(ckpt_dir, prefix)]


def by_run(infos: List[CheckpointInfo]) -> Dict[str, List[CheckpointInfo]]:
    """{run id: its files, oldest first}, the most recent run (the one that wrote last) last."""
    runs: Dict[str, List[CheckpointInfo]] = {}
    for info in sorted(infos, key=lambda i: (i.written, i.step)):
        runs.setdefault(info.run_id, []).append(info)
    return dict(sorted(runs.items(), key=lambda kv: max(i.written for i in kv[1])))


def run_note(folder: str, runs: int, chosen: CheckpointInfo) -> Optional[str]:
    """One line saying which run and step a folder holding `runs` training runs' checkpoints resolved to (None for
    one run)."""
    if runs < 2:
        return None
    return (f"checkpoint folder '{folder}' holds checkpoints of {runs} training runs; taking the most recent run's "
            f"({chosen.run_id}, started {chosen.run.get('started', 'unknown')}) newest: "
            f"{os.path.basename(chosen.path)}, step {chosen.step}")


def newest_file(ckpt_dir: str, prefix: str) -> Optional[Tuple[CheckpointInfo, Optional[str]]]:
    """(the checkpoint a folder means, a note or None), or None for a folder without one: the most recent run's best
    checkpoint (keep_best; the note says which step it is), else its newest (the note names the run when the folder
    holds several)."""
    newest_of = described(ckpt_dir, prefix)
    runs = by_run(newest_of + [describe(p) for p in best_files(ckpt_dir, prefix)])
    if not runs:
        return None
    files = list(runs.values())[-1]
    best = [i for i in files if i.model.get("best")]
    newest = max((i for i in files if not i.model.get("best")), key=lambda i: (i.step, i.written), default=None)
    if not best:
        return newest, run_note(ckpt_dir, len(runs), newest)
    chosen = max(best, key=lambda i: i.written)
    b = chosen.model["best"]
    return chosen, (f"checkpoint folder '{ckpt_dir}': taking the best checkpoint of run {chosen.run_id} by validation "
                    f"logloss: {os.path.basename(chosen.path)}, step {chosen.step} (validation logloss "
                    f"{b['val_logloss']:.6f}, auc {b['val_auc']:.6f})"
                    + (f"; the run's newest checkpoint is step {newest.step}" if newest else "")
                    + (f"; the folder holds {len(runs)} runs" if len(runs) > 1 else ""))


def resolve(path: str, prefix: Optional[str] = None, log: Optional[Callable[[str], None]] = None) -> str:
    """A checkpoint file, or a folder meaning the newest checkpoint of its most recent run (`log` gets the one-line
    note when the folder holds several runs)."""
    if os.path.isdir(path):
        found = newest_file(path, prefix) if prefix else None
        if found is None:
            others = sorted(glob.glob(os.path.join(glob.escape(path), f"*{EXT}")), key=os.path.getmtime)
            if others:
                return others[-1]
            hint = (f"; it has hybrid-parallel shards in rank_*/: join them with "
                    f"`{MERGE_COMMAND} {path}`") if glob.glob(os.path.join(path, "rank_*", f"*{EXT}")) else ""
            raise CheckpointError(f"no checkpoint (*{EXT}) in folder '{path}'{hint}")
        chosen, note = found
        if note and log is not None:
            log(note)
        return chosen.path
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    return path


def free_path(folder: str, prefix: str, epoch: int, step: int, run_id: str) -> str:
    """Where the run `run_id` writes its checkpoint of (epoch, step) in `folder`: the plain name, unless another run's
    file holds it (then the name tagged with the end of this run's id)."""
    return _own(folder, ckpt_name(prefix, epoch, step), ckpt_name(prefix, epoch, step, run_tag(run_id)), run_id)


def best_path(folder: str, prefix: str, run_id: str) -> str:
    """Where the run `run_id` writes its best checkpoint in `folder` (free_path's rule)."""
    return _own(folder, best_name(prefix), best_name(prefix, run_tag(run_id)), run_id)


def run_tag(run_id: str) -> str:
    """The end of a run id that tells its files from another run's of the same name."""
    return run_id.replace("-", "")[-TAG_CHARS:]


def _own(folder: str, plain: str, tagged: str, run_id: str) -> str:
    path = os.path.join(folder, plain)
    return os.path.join(folder, tagged) if os.path.isfile(path) and describe(path).run_id != run_id else path


def keep_newest(ckpt_dir: str, prefix: str, keep: int, run_id: str) -> List[str]:
    """Remove all but the newest `keep` checkpoints (by global step) of the run `run_id` in ckpt_dir; other runs'
    files are never touched. Returns the removed paths."""
    mine = sorted((i for i in described(ckpt_dir, prefix) if i.run_id == run_id), key=lambda i: (i.step, i.written))
    removed = [i.path for i in mine[:-keep]]
    for path in removed:
        os.remove(path)
    return removed


ShardSet = Dict[int, CheckpointInfo]           # rank -> its shard file's description


def shard_sets(ckpt_dir: str, prefix: str) -> Dict[Tuple[str, int], ShardSet]:
    """{(run id, global step): {rank: shard}} over CKPT_DIR/rank_*/."""
    sets: Dict[Tuple[str, int], ShardSet] = {}
    for d in sorted(glob.glob(os.path.join(glob.escape(ckpt_dir), "rank_*"))):
        m = re.fullmatch(r"rank_(\d+)", os.path.basename(d))
        if not m:
            continue
        for _, path in checkpoints_by_step(d, prefix):
            info = describe(path)
            if info.shard is None:
                raise CheckpointError(f"'{path}' is not a checkpoint shard (no meta.shard.*)")
            sets.setdefault((info.run_id, info.step), {})[int(m.group(1))] = info
    return sets


def complete_set(ranks: ShardSet) -> Optional[Dict[int, str]]:
    """The rank -> file map of one step of one run if it is a whole set (ranks 0..size-1), else None."""
    sizes = {i.shard["size"] for i in ranks.values()}
    if len(sizes) != 1:
        return None
    size = sizes.pop()
    return {r: ranks[r].path for r in range(size)} if set(ranks) >= set(range(size)) else None


def load_shard_info(path: str) -> dict:
    """meta.shard.* of a shard file ({rows, rank, size, segments}), read from the safetensors header and those small
    values only (a shard of the Kaggle table is ~1 GB; this reads a few KB)."""
    info = describe(path).shard
    if info is None:
        raise CheckpointError(f"'{path}' is not a checkpoint shard (no meta.shard.*)")
    return info


def newest(ckpt_dir: str, prefix: str, log: Optional[Callable[[str], None]] = None) -> Optional[Tuple[str, object]]:
    """The newest checkpoint of the most recent run: ("full", path) or ("shards", {rank: path}), or None. At equal
    steps the merged single file wins. `log` gets the one-line note when the folder holds several runs."""
    cands = [(info.run_id, info.written, info.step, 1, ("full", info.path), info)
             for info in described(ckpt_dir, prefix)]
    for (run, step), ranks in shard_sets(ckpt_dir, prefix).items():
        whole = complete_set(ranks)
        if whole:
            cands.append((run, max(i.written for i in ranks.values()), step, 0, ("shards", whole), ranks[0]))
    if not cands:
        return None
    latest = max(cands, key=lambda c: c[1])[0]                      # the run that wrote last
    best = max((c for c in cands if c[0] == latest), key=lambda c: (c[2], c[3]))
    note = run_note(ckpt_dir, len({c[0] for c in cands}), best[5])
    if note and log is not None:
        log(note)
    return best[4]


def rank_dir(ckpt_dir: str, rank: int) -> str:
    """CKPT_DIR/rank_K: where hybrid-parallel rank K writes its shards."""
    return os.path.join(ckpt_dir, f"rank_{rank}")
