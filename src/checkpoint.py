"""Checkpoints: parameters, optimizer state and data position in one safetensors file, written
atomically (temporary name, then rename), at most `keep` kept."""
import glob
import os
import re

import numpy as np
import mindspore as ms
from mindspore import Tensor

EXT = ".safetensors"
POSITION = ("global_step", "epoch", "step_in_epoch")  # stored as int64 tensors named meta.<key>


def canonical(name):
    """Parameter name without the wrapper cells' 'net.' prefixes, so a checkpoint saved from the train
    cell loads into the bare network and the export head alike."""
    return re.sub(r"(^|\.)net\.", r"\1", name)


class CheckpointError(ValueError):
    """A checkpoint is missing or does not fit the model; the message names the file and parameter."""


def ckpt_name(prefix, epoch, step):
    return f"{prefix}-{epoch}_{step}{EXT}"


def list_checkpoints(ckpt_dir, prefix):
    """Checkpoints of `prefix` in ckpt_dir, oldest first (by global step in the name)."""
    pat = re.compile(rf"^{re.escape(prefix)}-(\d+)_(\d+){re.escape(EXT)}$")
    found = []
    for path in glob.glob(os.path.join(ckpt_dir, f"{prefix}-*{EXT}")):
        m = pat.match(os.path.basename(path))
        if m:
            found.append((int(m.group(2)), path))
    return [p for _, p in sorted(found)]


def resolve(path, prefix=None):
    """A checkpoint file, or a folder meaning its newest checkpoint."""
    if os.path.isdir(path):
        cands = list_checkpoints(path, prefix) if prefix else []
        if not cands:
            cands = sorted(glob.glob(os.path.join(path, f"*{EXT}")), key=os.path.getmtime)
        if not cands:
            raise CheckpointError(f"no checkpoint (*{EXT}) in folder '{path}'")
        return cands[-1]
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    return path


def save(path, params, position, keep=None, prefix=None):
    """Save `params` (list of Parameters) plus position {global_step, epoch, step_in_epoch} atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    items = [{"name": canonical(p.name), "data": p} for p in params]
    items += [{"name": f"meta.{k}", "data": Tensor(np.array([position[k]], np.int64))} for k in POSITION]
    tmp = f"{path}.tmp-{os.getpid()}{EXT}"
    try:
        ms.save_checkpoint(items, tmp, format="safetensors")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    if keep and prefix:
        for old in list_checkpoints(os.path.dirname(os.path.abspath(path)), prefix)[:-keep]:
            os.remove(old)


def load(path):
    """Returns (dict name -> numpy array, position dict)."""
    try:
        data = ms.load_checkpoint(path, format="safetensors")
    except Exception as exc:  # noqa: BLE001 - MindSpore raises several types for a bad file
        raise CheckpointError(f"cannot read checkpoint '{path}': {exc}") from None
    arrays = {k: v.asnumpy() for k, v in data.items()}
    position = {k: int(arrays.pop(f"meta.{k}")[0]) for k in POSITION if f"meta.{k}" in arrays}
    return arrays, position


def restore(params, arrays, path):
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
