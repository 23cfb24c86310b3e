"""Criteo datasets are byte-identical to those of the release before feature specs (commit e39e92c): every part
file, vocab.npz and stats.json, and metadata.json but for the keys that name the time, the input path and the
feature spec. The digests below were computed by that release's code on the same inputs (this file's
`dataset_digest`); a change to the Criteo path that moves one byte of a dataset fails here."""
import gzip
import hashlib
import json
import os
import shutil

import pytest

from fixtures.paths import CRITEO_SAMPLE, make_cfg
from src.data.preprocess import preprocess

VOLATILE = ("created", "input", "files", "features", "feature_spec")   # "files" is covered file by file


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


KAGGLE = {   # options -> digest
    ("--pack_size=100",): "c861dd7738e7db00d84c25ffb51f4a3b563d90ea1612ade8ed5836d21eec36a2",
    ("--pack_size=64", "--max_ind_range=5000", "--val_split=True", "--shuffle_bucket_lines=500"): "657d562c4999dc14af839607bcc8d1c7b0ecb3c0c9e5cc56156543d6afb5ba19",
    ("--pack_size=32", "--threshold=3", "--chunk_bytes=65536", "--workers=2"): "3fa4e01546d8ee2399ff27bcb66b9714f29016f1b3c35e195d5e529da98695eb",
}
IDS = "cbb720a57220f85e61b5588c8a054c936151f2a9ed3b2e8de7f1030ffa794f6b"
DAYS = {
    ("--pack_size=64", "--val_split=True", "--chunk_bytes=16384", "--shuffle_bucket_lines=700", "--threshold=2"): "4494d377dee4645b5f5320a35b8ed2e784d733c4305cb0d0b84bd1374ab9f31c",
    ("--pack_size=64", "--max_ind_range=3000", "--chunk_bytes=16384", "--workers=2"): "fd99e2b2a996b7027169453f1a5229c63b801d54359e65d418c67205a5b6b09d",
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
    assert dataset_digest(meta["dataset_path"]) == IDS


@pytest.mark.parametrize("options", KAGGLE)
def test_kaggle_sample_dataset_is_unchanged(options, tmp_path):
    shutil.copy(CRITEO_SAMPLE, tmp_path / "train.txt")
    meta = preprocess(make_cfg(f"--data_path={tmp_path}", "--workers=1", *options), progress=False)
    assert dataset_digest(meta["dataset_path"]) == KAGGLE[options]


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
    assert dataset_digest(meta["dataset_path"]) == DAYS[options]
