"""A training run's identity, recorded in every checkpoint it writes (meta.model["run"] and ["dataset"]): which run
wrote a file, when, and on which dataset. Checkpoint folders resolve by it (src/training/checkpoint/retention.py).

    run     {"id": "20261205-091502-3fa2c1", "started": "2026-12-05T09:15:02", "written": 1796461234.5}
    dataset {"path": ..., "metadata_sha256": <SHA-256 of its metadata.json>, "table_sizes": [...]}

A resumed run keeps the id and start of the run it resumes; the ranks of a distributed run share rank 0's id.
"""
import datetime
import os
import secrets
import time
from typing import Callable, Optional

import numpy as np

from src.data.packed_format import METADATA, file_record

ID_BYTES = 32          # a run id as the ranks exchange it: UTF-8, zero-padded


def new_run() -> dict:
    """A fresh run record: {id, started}; the id is the start time and 6 random hex digits."""
    now = datetime.datetime.now()
    return {"id": f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}", "started": now.isoformat(timespec="seconds")}


def dataset_fingerprint(dataset_path: str, meta: dict) -> dict:
    """What identifies the dataset a run trains on: its path, the SHA-256 of its metadata.json (which lists every file's
    checksum) and its table sizes."""
    return {"path": os.path.abspath(dataset_path),
            "metadata_sha256": file_record(os.path.join(dataset_path, METADATA))["sha256"],
            "table_sizes": list(meta["table_sizes"])}


def stamped(run: dict) -> dict:
    """The run record as a checkpoint written now stores it (with `written`, seconds since the epoch)."""
    return {**run, "written": time.time()}


def resumed(model: dict, fallback: dict) -> dict:
    """The run a resume continues: the checkpoint's run record (id and start), or `fallback` for a checkpoint written
    before runs were recorded."""
    run = model.get("run") or {}
    return {"id": run["id"], "started": run.get("started", "")} if run.get("id") else fallback


def agreed_run(run: dict, gather: Optional[Callable[[np.ndarray], np.ndarray]]) -> dict:
    """Distributed: every rank takes rank 0's run record (`gather`: int32 [ID_BYTES] on each rank -> [N * ID_BYTES]
    rank-major, an AllGather); the start is carried in the id."""
    if gather is None:
        return run
    mine = np.zeros(ID_BYTES, np.int32)
    raw = run["id"].encode()[:ID_BYTES]
    mine[:len(raw)] = np.frombuffer(raw, np.uint8)
    first = gather(mine)[:ID_BYTES].astype(np.uint8).tobytes().rstrip(b"\0").decode()
    started = datetime.datetime.strptime(first[:15], "%Y%m%d-%H%M%S").isoformat(timespec="seconds")
    return {"id": first, "started": started}
