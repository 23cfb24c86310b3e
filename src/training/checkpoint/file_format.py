"""The checkpoint file: parameters, optimizer state and data position in one safetensors file, written atomically
(temporary name, then rename), with a checksum.

Every file says which of its parameters are split by rows across hybrid-parallel ranks: an int64 tensor
`meta.row_sharded.<name>` per such parameter (the model and the train step name them: `DLRM.row_sharded_params`,
`TrainStep.row_sharded_state`). A hybrid-parallel rank's shard also holds `meta.shard.{rows,rank,size}` and the
fused-table row ranges it holds, `meta.shard.segments` int64 [k, 2] (src/training/checkpoint/shards.py joins shards).
Every file carries `meta.model` (JSON as uint8 bytes: the model's DLRMSpec, the dataset's vocab_fingerprint and
fingerprint, and the training run that wrote it; src/training/checkpoint/header.py reads it without MindSpore), so
export.py rebuilds the network from the checkpoint alone, eval.py, export.py, the inference scripts and a resume refuse
a dataset the model does not fit (src/training/checkpoint/fit.py), and a folder resolves to the newest run's newest
checkpoint (retention.py); and `meta.sha256`, the SHA-256 of all its other tensors
(name, dtype, shape, bytes, in name order), checked on every read.
"""
import glob
import hashlib
import json
import os
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import mindspore as ms
from mindspore import Tensor

from src.training.checkpoint.header import (EXT, MODEL, POSITION, SEGMENTS, SHARD,  # noqa: F401
                                             CheckpointError)
from src.utils.staged_dir import folder_lock

ROW_SHARDED = "meta.row_sharded."                        # + parameter name: split by rows
CHECKSUM = "meta.sha256"                                 # uint8 [32] over every other tensor


def canonical(name: str) -> str:
    """Parameter name without the wrapper cells' 'net.' prefixes, so a checkpoint saved from the train
    cell loads into the bare network and the export head alike."""
    return re.sub(r"(^|\.)net\.", r"\1", name)


def _int(v):
    return Tensor(np.array([v], np.int64))


def _digest(arrays: Dict[str, np.ndarray]) -> np.ndarray:
    """SHA-256 of named arrays (name, dtype, shape and bytes, in name order) as uint8 [32]."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.data)
    return np.frombuffer(h.digest(), np.uint8).copy()


def save(path: str, params: Sequence, position: Dict[str, int], shard: Optional[dict] = None,
         row_sharded: Iterable[str] = (), model: Optional[dict] = None) -> None:
    """Save `params` (Parameters, or (name, numpy array) pairs) plus position {global_step, epoch,
    step_in_epoch, ...}, the names of the row-sharded parameters, the model description and, for a shard, its
    segments, with their checksum, atomically (retention.keep_newest then prunes the older ones)."""
    items = [{"name": canonical(p.name), "data": p} if hasattr(p, "name") else {"name": p[0], "data": Tensor(p[1])}
             for p in params]
    items += [{"name": f"meta.{k}", "data": _int(position[k])} for k in POSITION if k in position]
    items += [{"name": ROW_SHARDED + canonical(n), "data": _int(1)} for n in row_sharded]
    if shard:
        items += [{"name": f"meta.shard.{k}", "data": _int(shard[k])} for k in SHARD]
        items.append({"name": SEGMENTS, "data": Tensor(np.asarray(shard["segments"], np.int64).reshape(-1, 2))})
    if model is not None:
        items.append({"name": MODEL, "data": Tensor(np.frombuffer(json.dumps(model, sort_keys=True).encode(), np.uint8))})
    digest = _digest({it["name"]: it["data"].asnumpy() for it in items})   # asnumpy shares a CPU tensor's memory
    items.append({"name": CHECKSUM, "data": Tensor(digest)})
    _write(path, items)


def _write(path, items):
    """Write through a hidden temporary file and a rename, holding the folder's lock; temporary files of
    runs killed while writing (ours `.NAME.tmp-PID.safetensors`, MindSpore's own `.tmpXXXXXXXX`) are
    removed first: only a live writer holds the lock."""
    folder = os.path.dirname(os.path.abspath(path))
    with folder_lock(folder):
        for stale in glob.glob(os.path.join(folder, f".*.tmp-*{EXT}")) + glob.glob(os.path.join(folder, ".tmp*")):
            if os.path.isfile(stale):
                os.remove(stale)
        tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}{EXT}")
        try:
            ms.save_checkpoint(items, tmp, format="safetensors")
            os.replace(tmp, path)
        except Exception as exc:  # noqa: BLE001 - full disk, file-size limit, read-only folder; the writers raise
            # OSError, RuntimeError or safetensors' own SafetensorError
            first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise CheckpointError(f"cannot write checkpoint '{path}': {first}; the earlier checkpoints are kept "
                                  f"(free space and resume with --resume=True)") from None
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def read(path: str) -> Tuple[Dict[str, np.ndarray], dict, List[str], dict]:
    """(dict name -> numpy array, position dict, names of the row-sharded parameters, model description),
    after checking the checksum. position["shard"] = {rows, rank, size, segments} for a shard."""
    try:
        data = ms.load_checkpoint(path, format="safetensors")
    except Exception as exc:  # noqa: BLE001 - MindSpore raises several types for a bad file
        raise CheckpointError(f"cannot read checkpoint '{path}': {exc}") from None
    arrays = {k: v.asnumpy() for k, v in data.items()}
    stored = arrays.pop(CHECKSUM, None)
    if stored is None:
        raise CheckpointError(f"checkpoint '{path}' has no {CHECKSUM}: it was not written by this project's "
                              f"checkpoint.save (or lost its checksum); its contents cannot be trusted")
    if not np.array_equal(stored, _digest(arrays)):
        raise CheckpointError(f"checkpoint '{path}' fails its checksum: its tensors changed after it was written "
                              f"(disk or copy corruption); use another checkpoint")
    model = json.loads(arrays.pop(MODEL).tobytes().decode()) if MODEL in arrays else {}
    position = {k: int(arrays.pop(f"meta.{k}")[0]) for k in POSITION if f"meta.{k}" in arrays}
    sharded = sorted(k[len(ROW_SHARDED):] for k in list(arrays) if k.startswith(ROW_SHARDED))
    for k in sharded:
        del arrays[ROW_SHARDED + k]
    if f"meta.shard.{SHARD[0]}" in arrays:
        position["shard"] = {k: int(arrays.pop(f"meta.shard.{k}")[0]) for k in SHARD}
        position["shard"]["segments"] = [tuple(int(v) for v in seg) for seg in arrays.pop(SEGMENTS)]
    return arrays, position, sharded, model


def load(path: str) -> Tuple[Dict[str, np.ndarray], dict]:
    """(dict name -> numpy array, position dict; position["shard"] = {rows, rank, size, segments} for a shard)."""
    arrays, position, _, _ = read(path)
    return arrays, position


def restore(params: Sequence, arrays: Dict[str, np.ndarray], path: str) -> None:
    """Copy arrays into `params`; a missing or mis-shaped parameter is a CheckpointError."""
    for p in params:
        name = canonical(p.name)
        if name not in arrays:
            raise CheckpointError(f"checkpoint '{path}' has no parameter '{name}' (is it from another "
                                  f"optimizer or model config?)")
        a = arrays[name]
        if tuple(a.shape) != tuple(p.shape):
            raise CheckpointError(f"checkpoint '{path}': parameter '{name}' has shape {tuple(a.shape)}, the "
                                  f"model built from the config expects {tuple(p.shape)} (check the dataset's "
                                  f"table sizes, data_emb_dim, bottom_mlp_args, top_mlp_args, interaction_op)")
        p.set_data(Tensor(a.astype(np.float32, copy=False)))
