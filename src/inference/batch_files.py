"""The batch files of the inference path (preprocess.py -> ascend310_infer or the Python runner -> postprocess.py).

Layout of infer_data_path (written by preprocess.py):
    00_ids/batch_000000.bin     int32   little-endian, C order, shape [b, L]   (model input 0; L ids per sample, -1 pads)
    01_dense/batch_000000.bin   float32 little-endian, C order, shape [b, dense_dim]  (model input 1; absent when
                                                                                   the data has no dense features)
    label/batch_000000.bin      float32 little-endian, C order, shape [b, 1]          (0.0 or 1.0)
    manifest.json               the above plus batch count, batch size and sample count
Every batch holds test_batch_size samples except the last, which keeps the remainder; b is the file
size divided by the row size. The same names appear in every folder and sort in batch order.
Input folders are numbered so that sorting them gives the model's input order.

A runner writes, for each batch, result_path/batch_000000_0.bin (output 0: float32 [b, 1]
probabilities) and time_dir/test_perform_static.txt with the mean latency.
"""
import json
import os
import re
from typing import Iterable, List, Tuple

import numpy as np

from src.utils.staged_dir import has_file, staged_dir

INPUTS = (("00_ids", "<i4", "lookups"), ("01_dense", "<f4", "dense_dim"))
LABEL = ("label", "<f4", 1)
MANIFEST = "manifest.json"
RESULT_SUFFIX = "_0.bin"
TIME_FILE = "test_perform_static.txt"


class InferFilesError(ValueError):
    """A batch file is missing, mis-sized or unmatched; the message names the file."""


def batch_name(index: int) -> str:
    """0 -> 'batch_000000'."""
    return f"batch_{index:06d}"


def model_inputs(manifest: dict) -> List[Tuple[str, str, int]]:
    """(folder, numpy dtype, width) of each model input the manifest lists, in the model's input order."""
    dtypes = {"int32": "<i4", "float32": "<f4"}
    return [(x["folder"], dtypes[x["dtype"]], int(x["shape"][1])) for x in manifest["inputs"]]


def write_batches(batches: Iterable[Tuple[np.ndarray, np.ndarray, np.ndarray]], out_dir: str, lookups: int,
                  dense_dim: int, batch_size: int, progress=None) -> dict:
    """Write (ids int32 [b, S], dense float32 [b, Dn], label float32 [b, 1]) batches into out_dir
    atomically (temporary folder, then rename); returns the manifest. Without dense features (Dn = 0) the
    model has the ids input alone, and there is no 01_dense/."""
    n_batches = samples = 0
    inputs = INPUTS if dense_dim else INPUTS[:1]
    with staged_dir(out_dir, has_file(MANIFEST), "the inference batch files") as tmp:
        for folder, _, _ in inputs + (LABEL,):
            os.makedirs(os.path.join(tmp, folder))
        for ids, dense, label in batches:
            name = batch_name(n_batches) + ".bin"
            arrays = (ids, dense, label) if dense_dim else (ids, label)
            for (folder, dtype, _), arr in zip(inputs + (LABEL,), arrays):
                np.ascontiguousarray(arr, dtype=dtype).tofile(os.path.join(tmp, folder, name))
            n_batches += 1
            samples += len(label)
            if progress is not None:
                progress.update(len(label))
        manifest = {
            "inputs": [{"folder": INPUTS[0][0], "dtype": "int32", "shape": ["b", lookups]}] +
                      ([{"folder": INPUTS[1][0], "dtype": "float32", "shape": ["b", dense_dim]}] if dense_dim else []),
            "label": {"folder": LABEL[0], "dtype": "float32", "shape": ["b", 1]},
            "byte_order": "little-endian", "batches": n_batches, "batch_size": batch_size, "samples": samples,
        }
        with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1)
    return manifest


def list_batches(folder: str, suffix: str = ".bin") -> List[str]:
    """Sorted batch names (without suffix) of a folder."""
    if not os.path.isdir(folder):
        raise InferFilesError(f"folder '{folder}' does not exist")
    names = sorted(f[:-len(suffix)] for f in os.listdir(folder) if f.endswith(suffix))
    if not names:
        raise InferFilesError(f"folder '{folder}' has no *{suffix} batch files")
    return names


def read_array(path: str, dtype: str, width: int) -> np.ndarray:
    """A [b, width] array from a raw batch file; the size must be a whole number of rows."""
    if not os.path.isfile(path):
        raise InferFilesError(f"'{path}' does not exist")
    row = np.dtype(dtype).itemsize * width
    size = os.path.getsize(path)
    if size == 0 or size % row:
        raise InferFilesError(f"'{path}' has {size} bytes, not a positive multiple of one row "
                              f"({width} x {np.dtype(dtype).name} = {row} bytes)")
    return np.fromfile(path, dtype=dtype).reshape(-1, width)


def read_inputs(data_dir: str, name: str, inputs: List[Tuple[str, str, int]]) -> List[np.ndarray]:
    """The model inputs of one batch (`inputs`: model_inputs(manifest); ids int32 [b, S] and, with dense
    features, dense float32 [b, Dn]), checked to agree on b."""
    arrays = [read_array(os.path.join(data_dir, folder, name + ".bin"), dtype, w) for folder, dtype, w in inputs]
    for (folder, _, _), arr in zip(inputs[1:], arrays[1:]):
        if len(arr) != len(arrays[0]):
            raise InferFilesError(f"batch '{name}' has {len(arrays[0])} rows in {inputs[0][0]}/ but {len(arr)} "
                                  f"in {folder}/ of '{data_dir}'")
    return arrays


def read_results(result_dir: str, label_dir: str) -> Tuple[np.ndarray, np.ndarray]:
    """(probabilities float32 [n], labels float32 [n]) over all batches, matched by name; every label batch needs its result."""
    probs, labels = [], []
    for name in list_batches(label_dir):
        label = read_array(os.path.join(label_dir, name + ".bin"), LABEL[1], 1)
        prob = read_array(os.path.join(result_dir, name + RESULT_SUFFIX), "<f4", 1)
        if len(prob) != len(label):
            raise InferFilesError(f"'{os.path.join(result_dir, name + RESULT_SUFFIX)}' has {len(prob)} "
                                  f"predictions for {len(label)} labels in '{os.path.join(label_dir, name + '.bin')}'")
        bad = np.flatnonzero(~np.isfinite(prob) | (prob < 0) | (prob > 1))
        if len(bad):
            raise InferFilesError(f"'{os.path.join(result_dir, name + RESULT_SUFFIX)}' row {bad[0]} holds "
                                  f"{float(prob.ravel()[bad[0]])}, not a probability in [0, 1] ({len(bad)} such rows): the "
                                  f"model or the runner produced invalid output")
        probs.append(prob)
        labels.append(label)
    return np.concatenate(probs).ravel(), np.concatenate(labels).ravel()


def format_time(latencies_ms: List[float], samples: int, load_s: float) -> str:
    """The text of test_perform_static.txt (the C++ program writes the same three lines):
        NN inference cost average time: 1.726 ms of infer_count 3      (the model-zoo line)
        samples: 285, samples/s: 55035.0
        latency ms: p50 1.700, p99 2.100; model load: 0.123 s
    Latency is per batch call after one untimed warm-up call; p50/p99 by linear interpolation."""
    lat = np.asarray(latencies_ms, np.float64)
    return (f"NN inference cost average time: {lat.mean():4.3f} ms of infer_count {len(lat)}\n"
            f"samples: {samples}, samples/s: {samples / max(lat.sum() / 1000.0, 1e-9):.1f}\n"
            f"latency ms: p50 {np.percentile(lat, 50):.3f}, p99 {np.percentile(lat, 99):.3f}; "
            f"model load: {load_s:.3f} s\n")


_TIME = re.compile(r"average time: ([0-9.]+) ms of infer_count (\d+)\nsamples: (\d+), samples/s: ([0-9.]+)\n"
                   r"latency ms: p50 ([0-9.]+), p99 ([0-9.]+); model load: ([0-9.]+) s")


def read_time(path: str) -> dict:
    """{mean_ms, count, samples, samples_per_s, p50_ms, p99_ms, load_s} of a test_perform_static.txt."""
    m = _TIME.search(open(path, encoding="utf-8").read())
    if m is None:
        raise InferFilesError(f"'{path}' is not a test_perform_static.txt of this project's runners")
    keys = ("mean_ms", "count", "samples", "samples_per_s", "p50_ms", "p99_ms", "load_s")
    return {k: (int(v) if k in ("count", "samples") else float(v)) for k, v in zip(keys, m.groups())}


def write_time(time_dir: str, latencies_ms: List[float], samples: int, load_s: float) -> str:
    """Write time_dir/test_perform_static.txt (`format_time`) atomically; returns its text."""
    os.makedirs(time_dir, exist_ok=True)
    text = format_time(latencies_ms, samples, load_s)
    tmp = os.path.join(time_dir, f"{TIME_FILE}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, os.path.join(time_dir, TIME_FILE))
    return text
