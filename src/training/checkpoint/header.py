"""What a checkpoint file says about itself, read without MindSpore and without its large tensors: the model it holds
(`meta.model`: its DLRMSpec, the dataset's vocab_fingerprint, the training run and the dataset's fingerprint), its
data position and, for a hybrid-parallel shard, which rows it holds.

A checkpoint is a safetensors file: an 8-byte little-endian header length, a JSON header naming every tensor with
its dtype, shape and byte range, then the bytes. `describe(path)` reads the header and the few small `meta.*`
tensors (a few KB of a file that may hold GB of table), so resolving a folder of checkpoints, or checking a model
against a dataset, costs milliseconds and no MindSpore start-up.
"""
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np

EXT = ".safetensors"
MODEL = "meta.model"                                     # JSON model description, uint8 bytes
SHARD = ("rows", "rank", "size")                         # meta.shard.<key> in a hybrid-parallel shard
SEGMENTS = "meta.shard.segments"                          # int64 [k, 2]: the fused-table rows a shard holds
# The data position, stored as int64 tensors named meta.<key> (see file_format.save)
POSITION = ("global_step", "epoch", "step_in_epoch", "data_shards", "data_batch", "leftover_shards",
            "leftover_batch", "leftover_done")
NO_RUN = "(written before runs were recorded)"
_DTYPES = {"I64": "<i8", "U8": "u1", "I32": "<i4", "F32": "<f4"}


class CheckpointError(ValueError):
    """A checkpoint is missing or does not fit the model; the message names the file and parameter."""


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint file's self-description (`describe`). model: meta.model's JSON ({} for a file written before
    models were described); run: model["run"] ({} before runs were recorded); shard: {rows, rank, size, segments}
    of a hybrid-parallel shard, else None."""
    path: str
    model: dict
    position: Dict[str, int] = field(default_factory=dict)
    shard: Optional[dict] = None

    @property
    def run(self) -> dict:
        """The training run that wrote the file: {id, started, written, ...}; {} for a file without one."""
        return self.model.get("run", {})

    @property
    def run_id(self) -> str:
        """The run's id; the files written before runs were recorded count as one run of their own."""
        return self.run.get("id") or NO_RUN

    @property
    def written(self) -> float:
        """When the file was written (seconds since the epoch): the run's record, else the file's mtime."""
        return float(self.run.get("written") or os.path.getmtime(self.path))

    @property
    def step(self) -> int:
        """The global step after which the file was written (-1 when unknown)."""
        return int(self.position.get("global_step", -1))


def _header(f, path: str) -> dict:
    try:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > 1 << 30:
            raise ValueError(f"header length {n}")
        return json.loads(f.read(n))
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"'{path}' is not a checkpoint (no safetensors header: {exc})") from None


def read_meta(path: str) -> Dict[str, np.ndarray]:
    """Every `meta.*` tensor of a checkpoint (small: the model JSON, the position, shard info), by name."""
    try:
        with open(path, "rb") as f:
            header = _header(f, path)
            base = f.tell()                              # the tensors' bytes start after the header
            out = {}
            for name, info in sorted(header.items()):
                if not name.startswith("meta.") or not isinstance(info, dict):
                    continue
                lo, hi = info["data_offsets"]
                f.seek(base + lo)
                out[name] = np.frombuffer(f.read(hi - lo), _DTYPES.get(info["dtype"], "u1")).reshape(info["shape"])
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint '{path}': {exc.strerror or exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"'{path}' is not a checkpoint of this project (its header: {exc})") from None
    return out


def describe(path: str) -> CheckpointInfo:
    """The self-description of a checkpoint file (model, run, position, shard), from its header and meta tensors."""
    meta = read_meta(path)
    try:
        model = json.loads(meta[MODEL].tobytes().decode()) if MODEL in meta else {}
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"checkpoint '{path}' is damaged: its {MODEL} (the model's description) is not JSON; "
                              f"the file changed after it was written (disk or copy corruption): use another "
                              f"checkpoint") from None
    position = {k: int(meta[f"meta.{k}"].ravel()[0]) for k in POSITION if f"meta.{k}" in meta}
    shard = None
    if f"meta.shard.{SHARD[0]}" in meta:
        shard = {k: int(meta[f"meta.shard.{k}"].ravel()[0]) for k in SHARD}
        shard["segments"] = [tuple(int(v) for v in seg) for seg in meta[SEGMENTS].reshape(-1, 2)]
    return CheckpointInfo(path, model, position, shard)
