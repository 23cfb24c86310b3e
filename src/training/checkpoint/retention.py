"""Checkpoint files in a folder: their names (PREFIX-EPOCH_STEP.safetensors), listing by global step, retention
(the newest `keep_checkpoint_max`), and resolving a file or folder argument to one file. Hybrid-parallel ranks
write their shards into CKPT_DIR/rank_K/."""
import glob
import os
import re
from typing import List, Optional, Tuple

from src.training.checkpoint.file_format import EXT, CheckpointError

MERGE_COMMAND = "python -m src.training.checkpoint merge"


def ckpt_name(prefix: str, epoch: int, step: int) -> str:
    """'dlrm', 1, 500 -> 'dlrm-1_500.safetensors'."""
    return f"{prefix}-{epoch}_{step}{EXT}"


def checkpoints_by_step(ckpt_dir: str, prefix: str) -> List[Tuple[int, str]]:
    """[(global step, path)] of the checkpoints of `prefix` in ckpt_dir, oldest first (step from the name)."""
    pat = re.compile(rf"^{re.escape(prefix)}-(\d+)_(\d+){re.escape(EXT)}$")
    found = []
    for path in glob.glob(os.path.join(ckpt_dir, f"{prefix}-*{EXT}")):
        m = pat.match(os.path.basename(path))
        if m:
            found.append((int(m.group(2)), path))
    return sorted(found)


def list_checkpoints(ckpt_dir: str, prefix: str) -> List[str]:
    """Checkpoints of `prefix` in ckpt_dir, oldest first (by global step in the name)."""
    return [p for _, p in checkpoints_by_step(ckpt_dir, prefix)]


def resolve(path: str, prefix: Optional[str] = None) -> str:
    """A checkpoint file, or a folder meaning its newest checkpoint."""
    if os.path.isdir(path):
        cands = list_checkpoints(path, prefix) if prefix else []
        if not cands:
            cands = sorted(glob.glob(os.path.join(path, f"*{EXT}")), key=os.path.getmtime)
        if not cands:
            hint = (f"; it has hybrid-parallel shards in rank_*/: join them with "
                    f"`{MERGE_COMMAND} {path}`") if glob.glob(os.path.join(path, "rank_*", f"*{EXT}")) else ""
            raise CheckpointError(f"no checkpoint (*{EXT}) in folder '{path}'{hint}")
        return cands[-1]
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    return path


def keep_newest(ckpt_dir: str, prefix: str, keep: int) -> None:
    """Remove all but the newest `keep` checkpoints of `prefix` in ckpt_dir (by global step)."""
    for old in list_checkpoints(ckpt_dir, prefix)[:-keep]:
        os.remove(old)


def rank_dir(ckpt_dir: str, rank: int) -> str:
    """CKPT_DIR/rank_K: where hybrid-parallel rank K writes its shards."""
    return os.path.join(ckpt_dir, f"rank_{rank}")
