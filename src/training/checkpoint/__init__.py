"""Checkpoints, by job: the file format (file_format.py), file names and retention (retention.py), hybrid-parallel
shard sets and their merge (merge.py), the command line (__main__.py). Callers use the package's names below."""
from src.training.checkpoint.file_format import (CHECKSUM, EXT, MODEL, POSITION, ROW_SHARDED, SEGMENTS, SHARD,  # noqa: F401
                                                 CheckpointError, canonical, check_same_model, check_same_vocab,
                                                 load, read, restore, save)
from src.training.checkpoint.merge import load_rows, load_shard_info, merge, newest, shard_sets  # noqa: F401
from src.training.checkpoint.retention import (MERGE_COMMAND, checkpoints_by_step, ckpt_name, keep_newest,  # noqa: F401
                                               list_checkpoints, rank_dir, resolve)
