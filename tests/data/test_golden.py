"""Criteo datasets are pinned twice:
- `dataset_digest` (the files: every part file, vocab.npz and stats.json, and metadata.json but for the keys that
  name the time, the input path and the feature spec) was regenerated on purpose for format 4 (raw-bytes columns,
  CHANGELOG.md); the format-3 digests it replaced had been computed by the release before feature specs (e39e92c);
- `content_digest` (the samples as read back, split by split, and vocab.npz / stats.json) was computed from the
  format-3 datasets of the last format-3 commit (1c3e8d1) and is the same for format 4: the version bump changed
  how the columns are stored, not one id, value or label.
A change to the Criteo path that moves one byte of a dataset fails here."""
import gzip
import hashlib
import json
import os
import shutil

import numpy as np
import pytest

from fixtures.paths import CRITEO_SAMPLE, make_cfg
from src.data.preprocess import preprocess

VOLATILE = ("created", "input", "files", "features", "feature_spec")   # "files" is covered file by file


def content_digest(folder: str) -> str:
    """SHA-256 over every split's ids, dense and label arrays as the reader returns them, and vocab.npz/stats.json."""
    from fixtures.datasets import read_split
    from src.data.packed_format import load_metadata
    h = hashlib.sha256()
    for split in sorted(load_metadata(folder)["parts"]):
        for arr in read_split(folder, split):
            h.update(split.encode() + np.ascontiguousarray(arr).tobytes())
    for name in ("vocab.npz", "stats.json"):
        if os.path.exists(os.path.join(folder, name)):
            h.update(name.encode() + open(os.path.join(folder, name), "rb").read())
    return h.hexdigest()


def dataset_digest(folder: str) -> str:
    """SHA-256 over the dataset's files (name and content; metadata.json without VOLATILE keys)."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name == "metadata.json":
            meta = json.load(open(path, encoding="utf-8"))
            data = json.dumps({k: v for k, v in meta.items() if k not in VOLATILE}, sort_keys=True).encode()
        else:
            data = open(path, "rb").read()
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


KAGGLE = {   # options -> (dataset_digest, content_digest)
    ("--pack_size=100",): ("8d22fd2f37438faa3b65831a47abd87e748a0e7497248257eeffa8ea64b5595e",
        "9009aca5538ff0f82026e5b94829396e2bbf938a512ad00a61ea21315aefd6c7"),
    ("--pack_size=64", "--max_ind_range=5000", "--val_split=True", "--shuffle_bucket_lines=500"): ("300cfc47388d22a15d0f090c57eea4aa5f035b791b2d36d84f86c0235d16ece7",
        "b3f401aaa1f0cdb5afc75d55de65c375bd0a033a6da4d508f05757dbb74496b3"),
    ("--pack_size=32", "--threshold=3", "--chunk_bytes=65536", "--workers=2"): ("bb3b08f51b3da4356b5f95752100338a6de20ebb6b967efcd9aac50d9f89fc88",
        "a9cc654196e2ecca5fa9ac1bf950d5f0e4882442c279fdd3cb099a1611cc4ff5"),
}
IDS = ("24bdd1a316eefd2298960e02a908e13ab744eaf2482e1c83d939c273cb5cb8f7",
       "e898994c847740ceed37c952e9384ce004b11f37bc6b30647a3e9756d00857ba")
DAYS = {
    ("--pack_size=64", "--val_split=True", "--chunk_bytes=16384", "--shuffle_bucket_lines=700", "--threshold=2"): ("eef186034e0a1e5c7e07d57b54ffdb3a1eff3e5f211a304ee37cf3970ee5bc1e",
        "3c3d5f87f692fca45cd5928049754329bab5514d3c1da7e3411ac92481f7f6c3"),
    ("--pack_size=64", "--max_ind_range=3000", "--chunk_bytes=16384", "--workers=2"): ("d103bd5323219ba7b8f584dfe3c09ce4d3bfabab3e6595aacf3c8aa3a1106028",
        "61451a046ee252e78230b03bdbad75decaa1807e228edaf1d475856d247a6f40"),
}


def _decimal_ids(src: str, dst: str) -> None:
    """The sample with every categorical value written as a decimal id (skip_id_convert's input)."""
    with open(src) as f, open(dst, "w") as g:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            g.write("\t".join(fields[:14] + [str(int(v, 16) % 100003) if v else "" for v in fields[14:]]) + "\n")


def test_decimal_ids_dataset_is_unchanged(tmp_path):
    _decimal_ids(CRITEO_SAMPLE, tmp_path / "train.txt")
    meta = preprocess(make_cfg(f"--data_path={tmp_path}", "--workers=1", "--skip_id_convert=1", "--pack_size=50"),
                      progress=False)
    assert (dataset_digest(meta["dataset_path"]), content_digest(meta["dataset_path"])) == IDS


@pytest.mark.parametrize("options", KAGGLE)
def test_kaggle_sample_dataset_is_unchanged(options, tmp_path):
    shutil.copy(CRITEO_SAMPLE, tmp_path / "train.txt")
    meta = preprocess(make_cfg(f"--data_path={tmp_path}", "--workers=1", *options), progress=False)
    assert (dataset_digest(meta["dataset_path"]), content_digest(meta["dataset_path"])) == KAGGLE[options]


@pytest.fixture(scope="module")
def day_text(tmp_path_factory):
    from src.data.synthetic import generate_days
    d = tmp_path_factory.mktemp("golden_days")
    generate_days(str(d), 3, 900, seed=21, progress=False)
    return d


@pytest.mark.parametrize("options", DAYS)
def test_day_files_dataset_is_unchanged(options, day_text, tmp_path):
    for k in range(3):
        if k == 1:                                                       # one of them compressed
            with open(day_text / f"day_{k}", "rb") as f, gzip.open(tmp_path / f"day_{k}.gz", "wb") as g:
                g.write(f.read())
        else:
            shutil.copy(day_text / f"day_{k}", tmp_path)
    meta = preprocess(make_cfg(f"--data_path={tmp_path}", *options), progress=False)
    assert (dataset_digest(meta["dataset_path"]), content_digest(meta["dataset_path"])) == DAYS[options]
