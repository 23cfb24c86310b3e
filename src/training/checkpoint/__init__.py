"""Checkpoints, by job: the file format (file_format.py), what a file says about itself read without MindSpore
(header.py), whether a model fits a dataset (fit.py), file names, runs and retention (retention.py), hybrid-parallel
shard sets and their merge (shards.py), the command line (__main__.py). Callers use the package's names below.

The names are loaded on first use, so that `src.training.checkpoint.header` and `.fit` (the checks made before
MindSpore starts) import no MindSpore."""
import importlib

_WHERE = {
    "file_format": ("CHECKSUM", "ROW_SHARDED", "canonical", "load", "read", "restore", "save"),
    "header": ("EXT", "MODEL", "POSITION", "SEGMENTS", "SHARD", "CheckpointError", "CheckpointInfo", "describe"),
    "fit": ("ModelDataMismatch", "check_fits", "check_same_model", "checked_checkpoint", "checked_resume", "mismatch",
            "model_spec"),
    "shards": ("load_rows", "merge", "merge_best"),
    "retention": ("MERGE_COMMAND", "best_files", "best_path", "checkpoints_by_step", "ckpt_name", "free_path",
                  "keep_newest",
                  "list_checkpoints", "load_shard_info", "newest", "rank_dir", "resolve",
                  "shard_sets"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    """The package's names, each imported from its module on first use (PEP 562)."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value
