"""Does a model fit a dataset, and the config that asks for it? Checked before any graph is built, without MindSpore.

A model (a checkpoint's `meta.model`, or an export's record of it) fits a dataset when the dataset's features are the
ones the model reads (names, kinds, dense width, ids per sample, multi-hot max_len and pooling), its table sizes are
the model's, and its ids mean what they meant in training (equal vocab_fingerprint). The first difference is said in
one line naming both values, for example

    checkpoint 'ckpt/dlrm-1_97.safetensors' does not fit dataset 'data/mindrecord': checkpoint has 626,612 table rows
    for 26 slots; dataset ids need 2,600,000 ...

and the commands exit 2 (src/utils/cli.py) before MindSpore starts.
"""
from typing import Callable, List, Optional

from src.data.packed_format import load_metadata
from src.model_utils.spec import CRITEO_DENSE, DLRMSpec, Feature, criteo_features, features_of
from src.training.checkpoint.header import CheckpointError, CheckpointInfo, describe
from src.training.checkpoint.retention import newest, resolve


class ModelDataMismatch(CheckpointError):
    """The model does not fit the dataset (or the run it resumes); commands exit 2 on it."""
    exit_code = 2


def model_spec(model: dict) -> Optional[DLRMSpec]:
    """The DLRMSpec a model description stores (None for a checkpoint written before specs)."""
    return DLRMSpec.from_json(model["spec"]) if "spec" in model else None


def _model_features(model: dict) -> Optional[List[Feature]]:
    spec = model_spec(model)
    if spec is not None:
        return list(spec.features)
    if "table_sizes" in model:                                  # a checkpoint written before specs
        return criteo_features(model["table_sizes"], model.get("dense_dim", CRITEO_DENSE))
    return None


def _describe(f: Feature) -> str:
    return f.kind if f.kind != "multi_hot" else f"multi_hot (max_len {f.max_len}, {f.pooling} pooling)"


def _feature_difference(have: List[Feature], want: List[Feature], what: str) -> Optional[str]:
    """The first way the dataset's features (want) differ from the model's (have; `what`: checkpoint or model), in
    words; None when they agree (table rows aside)."""
    dense = [sum(f.kind == "dense" for f in fs) for fs in (have, want)]
    if dense[0] != dense[1]:
        return f"{what} takes {dense[0]} dense features; dataset has {dense[1]}"
    slots = [[f for f in fs if f.kind != "dense"] for fs in (have, want)]
    if len(slots[0]) != len(slots[1]):
        return f"{what} has {len(slots[0])} slots (tables); dataset has {len(slots[1])}"
    lookups = [sum(f.max_len for f in s) for s in slots]
    if lookups[0] != lookups[1]:
        return f"{what} reads {lookups[0]} ids per sample; dataset has {lookups[1]}"
    for a, b in zip(have, want):
        if a.name != b.name:
            return f"{what}'s feature {a.name!r} is dataset feature {b.name!r} (another column layout)"
        if (a.kind, a.max_len, a.pooling) != (b.kind, b.max_len, b.pooling) and "dense" not in (a.kind, b.kind):
            return f"feature {a.name!r} is {_describe(a)} in the {what}; {_describe(b)} in the dataset"
    return None


def _rows_difference(have: List[Feature], want: List[Feature], what: str) -> Optional[str]:
    rows = [[f.rows for f in fs if f.kind != "dense"] for fs in (have, want)]
    if rows[0] == rows[1]:
        return None
    text = f"{what} has {sum(rows[0]):,} table rows for {len(rows[0])} slots; dataset ids need {sum(rows[1]):,}"
    if sum(rows[0]) == sum(rows[1]):
        name, a, b = next((f.name, x, y) for f, x, y in zip([f for f in want if f.kind != "dense"], *rows) if x != y)
        text += f" (slot {name}: {a:,} rows in the {what}, {b:,} in the dataset)"
    return text


def mismatch(model: dict, meta: dict, what: str = "checkpoint") -> Optional[str]:
    """How a model description (a checkpoint's meta.model) fails to fit a dataset's metadata.json, in words; None when
    it fits (a description that records nothing is taken to fit: a checkpoint written before models were described)."""
    have, want = _model_features(model), features_of(meta)
    if have is not None:
        reason = _feature_difference(have, want, what) or _rows_difference(have, want, what)
        if reason:
            return reason
    ours, theirs = model.get("vocab_fingerprint"), meta["vocab_fingerprint"]
    if ours is not None and ours != theirs:
        return (f"its ids mean something else: {what} vocab_fingerprint {ours[:12]}..., dataset {theirs[:12]}... "
                f"(another vocabulary, threshold, max_ind_range or input)")
    return None


def check_fits(model: dict, source: str, meta: dict, dataset_path: str, what: str = "checkpoint") -> None:
    """ModelDataMismatch (one line naming both values) unless the model `source` describes fits the dataset."""
    reason = mismatch(model, meta, what)
    if reason:
        raise ModelDataMismatch(f"{what} '{source}' does not fit dataset '{dataset_path}': {reason}; use the dataset "
                                f"it was trained on, or a {what} trained on this one")


def check_same_model(model: dict, ckpt: str, spec: DLRMSpec) -> None:
    """A checkpoint that stores its spec must hold the model `spec` describes: ModelDataMismatch naming the config
    keys (or features) that differ."""
    have = model_spec(model)
    if have is None or have == spec:
        return
    a, b = have.config_values(), spec.config_values()
    a["optimizer"], b["optimizer"] = have.optimizer.name, spec.optimizer.name
    keys = [f"{k}={a.get(k)} (config: {b.get(k)})" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if have.features != spec.features:
        keys.append("the dataset's features or table sizes")
    raise ModelDataMismatch(f"checkpoint '{ckpt}' holds another model than the config describes: "
                            f"{', '.join(keys)}; train with the checkpoint's settings or use another ckpt_path")


def checked_checkpoint(checkpoint_path: str, prefix: str, dataset_path: Optional[str],
                       log: Callable[[str], None] = print) -> CheckpointInfo:
    """The checkpoint a file or folder argument names (a folder: its most recent run's newest, said in one line when it
    holds several runs), checked to fit the dataset at `dataset_path` (None: no dataset to check against). Reads
    headers and metadata.json only: no MindSpore, no graph."""
    info = describe(resolve(checkpoint_path, prefix, log))
    if dataset_path:
        check_fits(info.model, info.path, load_metadata(dataset_path, check_files=False), dataset_path)
    return info


def checked_resume(ckpt_path: str, prefix: str, dataset_path: str, spec: DLRMSpec,
                   log: Callable[[str], None] = print) -> Optional[CheckpointInfo]:
    """What a resume would start from (retention.newest; a shard set by its rank 0 shard), checked to fit the dataset
    and the model the config describes, before MindSpore starts; None when there is nothing to resume."""
    source = newest(ckpt_path, prefix, log)
    if source is None:
        return None
    kind, what = source
    info = describe(what if kind == "full" else what[0])
    check_fits(info.model, info.path, load_metadata(dataset_path, check_files=False), dataset_path)
    check_same_model(info.model, info.path, spec)
    return info
