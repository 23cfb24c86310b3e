"""Checkpoints: parameters, optimizer state and data position in one safetensors file, written
atomically (temporary name, then rename), at most `keep` kept.

Every file says which of its parameters are split by rows across hybrid-parallel ranks: an int64
tensor `meta.row_sharded.<name>` per such parameter (the model and the train step name them:
`DLRM.row_sharded_params`, `TrainStep.row_sharded_state`).
Hybrid-parallel ranks save shards: CKPT_DIR/rank_K/PREFIX-E_S.safetensors holds rank K's rows of the
row-sharded parameters (the fused-table row ranges `meta.shard.segments`, int64 [k, 2], one after
another, as its sharding plan placed them) plus the replicated MLPs. `merge` joins a complete set into
the single-device file CKPT_DIR/PREFIX-E_S.safetensors that eval.py, export.py and any number of ranks,
under any plan, load; `load_rows` cuts any checkpoint to the segments of a rank of another layout.

Every file also carries `meta.model` (JSON as uint8 bytes: table sizes, architecture keys, optimizer and
the dataset's vocab_fingerprint), so export.py rebuilds the network from the checkpoint alone and eval.py
refuses a dataset whose ids mean something else; and `meta.sha256`, the SHA-256 of all its other tensors
(name, dtype, shape, bytes, in name order), checked on every read.

    python -m src.training.checkpoint merge CKPT_DIR [--prefix dlrm] [--step N]
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

from src.model_utils.spec import DLRMSpec
from src.utils.staged_dir import folder_lock

EXT = ".safetensors"
# The data position, stored as int64 tensors named meta.<key>: the step, the epoch, the batches taken per rank in
# this epoch's stream, the layout that took them (ranks x batch per rank) and, when that stream is the rest of an
# epoch another layout started, that layout and its batches (0 = none). See reader.PackedBatches.continue_epoch.
POSITION = ("global_step", "epoch", "step_in_epoch", "data_shards", "data_batch", "leftover_shards",
            "leftover_batch", "leftover_done")
SHARD = ("rows", "rank", "size")                         # meta.shard.<key> in a hybrid-parallel shard
SEGMENTS = "meta.shard.segments"                          # int64 [k, 2]: the fused-table rows a shard holds
ROW_SHARDED = "meta.row_sharded."                        # + parameter name: split by rows
MODEL = "meta.model"                                     # JSON model description, uint8 bytes
CHECKSUM = "meta.sha256"                                 # uint8 [32] over every other tensor
MERGE_COMMAND = "python -m src.training.checkpoint merge"


def canonical(name: str) -> str:
    """Parameter name without the wrapper cells' 'net.' prefixes, so a checkpoint saved from the train
    cell loads into the bare network and the export head alike."""
    return re.sub(r"(^|\.)net\.", r"\1", name)


class CheckpointError(ValueError):
    """A checkpoint is missing or does not fit the model; the message names the file and parameter."""


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


def rank_dir(ckpt_dir: str, rank: int) -> str:
    """CKPT_DIR/rank_K: where hybrid-parallel rank K writes its shards."""
    return os.path.join(ckpt_dir, f"rank_{rank}")


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


def save(path: str, params: Sequence, position: Dict[str, int], keep: Optional[int] = None,
         prefix: Optional[str] = None, shard: Optional[dict] = None,
         row_sharded: Iterable[str] = (), model: Optional[dict] = None) -> None:
    """Save `params` (Parameters, or (name, numpy array) pairs) plus position {global_step, epoch,
    step_in_epoch}, the names of the row-sharded parameters, the model description and, for a shard, its
    segments, with their checksum, atomically; then keep only the newest `keep` checkpoints of `prefix`."""
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
    if keep and prefix:
        for old in list_checkpoints(os.path.dirname(os.path.abspath(path)), prefix)[:-keep]:
            os.remove(old)


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


def check_same_vocab(model: dict, ckpt: str, meta: dict, dataset_path: str) -> None:
    """A checkpoint's ids must mean what the dataset's ids mean (equal vocab_fingerprint)."""
    want, have = model.get("vocab_fingerprint"), meta["vocab_fingerprint"]
    if want is not None and want != have:
        raise CheckpointError(f"checkpoint '{ckpt}' was trained on a dataset whose ids mean something else: its "
                              f"vocab_fingerprint is {want[:12]}..., dataset '{dataset_path}' has {have[:12]}... "
                              f"(another vocabulary, threshold, max_ind_range or input); use the dataset it was "
                              f"trained on")


def check_same_model(model: dict, ckpt: str, spec: DLRMSpec) -> None:
    """A checkpoint that stores its spec must hold the model `spec` describes: CheckpointError naming the config
    keys (or features) that differ."""
    if "spec" not in model:
        return
    have = DLRMSpec.from_json(model["spec"])
    if have == spec:
        return
    a, b = have.config_values(), spec.config_values()
    a["optimizer"], b["optimizer"] = have.optimizer.name, spec.optimizer.name
    keys = [f"{k}={a.get(k)} (config: {b.get(k)})" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if have.features != spec.features:
        keys.append("the dataset's features or table sizes")
    raise CheckpointError(f"checkpoint '{ckpt}' holds another model than the config describes: "
                          f"{', '.join(keys)}; train with the checkpoint's settings or use another ckpt_path")


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


def main(argv: Optional[List[str]] = None) -> None:
    """`python -m src.training.checkpoint merge CKPT_DIR [--prefix dlrm] [--step N]`"""
    import argparse
    import sys
    p = argparse.ArgumentParser(description="Merge hybrid-parallel shards (CKPT_DIR/rank_*/) into one "
                                            "single-device checkpoint in CKPT_DIR")
    p.add_argument("command", choices=["merge"])
    p.add_argument("ckpt_dir")
    p.add_argument("--prefix", default="dlrm")
    p.add_argument("--step", type=int, default=None, help="global step to merge (default: the newest complete set)")
    args = p.parse_args(argv)
    try:
        print(merge(args.ckpt_dir, args.prefix, args.step))
    except CheckpointError as exc:
        sys.stderr.write(f"merge error: {exc}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
