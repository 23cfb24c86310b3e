"""The record an exported model carries beside it: `<model file>.json` (dlrm.mindir.json, dlrm.onnx.json,
dlrm_graph.mindir.json) says which model the graph holds (the checkpoint's meta.model: its DLRMSpec, the dataset's
vocab_fingerprint and fingerprint, the training run), from which checkpoint and step, and how it was exported. The
inference path (preprocess.py, postprocess.py, both inference scripts) checks it against the dataset before anything
runs, as eval.py checks a checkpoint; a model bundle (src/inference/bundle.py) holds the same record in its
manifest. Read without MindSpore.

    {"kind": "dlrm-export", "version": 1, "model_file": "dlrm.onnx", "file_format": "ONNX", "batch": 16384,
     "table_dtype": "float32", "checkpoint": "...", "step": 209, "model": {"spec": ..., "vocab_fingerprint": ...,
     "run": ..., "dataset": ...}}
"""
import json
import os
from typing import List, Optional

from src.data.packed_format import load_metadata
from src.training.checkpoint.fit import check_fits
from src.training.checkpoint.header import CheckpointError

KIND, VERSION = "dlrm-export", 1
SUFFIX = ".json"
BUNDLE_MANIFEST = "manifest.json"          # a bundle folder's manifest (src/inference/bundle.py) holds the record too


class ModelRecordError(CheckpointError):
    """An exported model whose record is missing or unreadable; the message names the file."""


def record_path(model_file: str) -> str:
    """Where the record of an exported model file lives: the file's path + '.json'."""
    return model_file + SUFFIX


def make_record(model_file: str, file_format: str, batch: Optional[int], table_dtype: str, checkpoint: str,
                step: int, model: dict) -> dict:
    """The record of an export (see the module docstring)."""
    return {"kind": KIND, "version": VERSION, "model_file": os.path.basename(model_file), "file_format": file_format,
            "batch": batch, "table_dtype": table_dtype, "checkpoint": os.path.abspath(checkpoint), "step": step,
            "model": model}


def read_record(model_path: str) -> dict:
    """The record of an exported model file (its `.json` beside it), or of a bundle folder (its manifest's)."""
    if os.path.isdir(model_path):
        path = os.path.join(model_path, BUNDLE_MANIFEST)
    else:
        if not os.path.isfile(model_path):
            raise ModelRecordError(f"model '{model_path}' does not exist")
        path = record_path(model_path)
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except FileNotFoundError:
        raise ModelRecordError(f"model '{model_path}' has no record '{path}': export it again with this project's "
                               f"export.py, which writes the record beside the model") from None
    except (OSError, ValueError) as exc:
        raise ModelRecordError(f"model record '{path}' is not readable JSON ({exc})") from None
    record = record.get("record", record)            # a bundle's manifest holds it under "record"
    if not isinstance(record, dict) or record.get("kind") != KIND or not isinstance(record.get("model"), dict):
        raise ModelRecordError(f"'{path}' is not a model record of this project's export.py (kind {KIND!r})")
    return record


def check_model_fits(model_path: str, dataset_path: str) -> dict:
    """The record of `model_path`, checked to fit the dataset (ModelDataMismatch naming both values otherwise)."""
    record = read_record(model_path)
    meta = load_metadata(dataset_path, check_files=False)
    check_fits(record["model"], model_path, meta, dataset_path, what="model")
    return record


def main(argv: Optional[List[str]] = None) -> None:
    """`python -m src.inference.model_record check --model_path=M --dataset_path=D`: exit 0 when the exported model
    fits the dataset; one line and exit 2 when it does not (the inference scripts run it first)."""
    import argparse
    from src.data.packed_format import DatasetError
    from src.utils.cli import run_or_exit
    ap = argparse.ArgumentParser(prog="python -m src.inference.model_record", description=main.__doc__)
    ap.add_argument("command", choices=["check"])
    ap.add_argument("--model_path", required=True)
    ap.add_argument("--dataset_path", required=True)
    args = ap.parse_args(argv)
    run_or_exit("model check", lambda: check_model_fits(args.model_path, args.dataset_path),
                (CheckpointError, DatasetError))


if __name__ == "__main__":
    main()
