import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("GLOG_v", "3")
FIXTURE = os.path.join(ROOT, "tests", "data", "criteo_kaggle_train_head1999.tsv")   # see tests/data/README.md


def make_cfg(*overrides):
    from src.model_utils.config import parse_cli
    return parse_cli(list(overrides))


@pytest.fixture(scope="session", autouse=True)
def ms_context():
    import mindspore as ms
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")


@pytest.fixture(scope="session")
def fixture_file():
    if not os.path.isfile(FIXTURE):
        pytest.fail(f"real-data fixture missing: {FIXTURE}")
    return FIXTURE


@pytest.fixture(scope="session")
def real_dataset(tmp_path_factory, fixture_file):
    """The real fixture preprocessed (threshold 1): (data_dir, metadata)."""
    from src.data.preprocess import preprocess
    d = tmp_path_factory.mktemp("real")
    os.symlink(fixture_file, d / "train.txt")
    meta = preprocess(make_cfg(f"--data_path={d}", "--train_line_count=1999", "--pack_size=100"), progress=False)
    return str(d), meta


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory):
    """20k synthetic lines with true probabilities, preprocessed: (data_dir, metadata)."""
    from src.data.preprocess import preprocess
    from src.data.synthetic import generate
    d = tmp_path_factory.mktemp("synth")
    generate(str(d / "train.txt"), 20000, seed=5, prob_file=str(d / "train_prob.npy"), progress=False)
    meta = preprocess(make_cfg(f"--data_path={d}", "--pack_size=256", "--threshold=2"), progress=False)
    return str(d), meta


def read_split(dataset_path, split):
    from src.data.reader import PackedBatches
    parts = list(PackedBatches(dataset_path, split, 1 << 20))
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]))
