"""Synthetic Criteo-format data: the real file's structure and a planted model."""
import numpy as np
import pandas as pd

from src.data.synthetic import generate


def test_synthetic_file_has_the_criteo_structure(tmp_path):
    generate(str(tmp_path / "train.txt"), 30000, seed=1, prob_file=str(tmp_path / "p.npy"), progress=False)
    df = pd.read_csv(tmp_path / "train.txt", sep="\t", header=None, dtype={i: str for i in range(14, 40)})
    assert df.shape == (30000, 40)
    miss = df.isna().mean()
    assert abs(miss[1] - 0.45) < 0.02 and abs(miss[10] - 0.45) < 0.02 and (df[1].isna() == df[10].isna()).all()
    assert abs(miss[12] - 0.77) < 0.02 and abs(miss[35] - 0.80) < 0.02
    assert (df[33].isna() == df[39].isna()).all() and abs(miss[33] - 0.44) < 0.02
    assert df[2].min() == -3 and (df[[c for c in range(1, 14) if c != 2]].min() >= 0).all()
    cats = df[14].dropna()
    assert cats.str.fullmatch(r"[0-9a-f]{8}").all()
    top = df[16].value_counts()
    assert top.iloc[0] > 20 * top.iloc[len(top) // 2]               # heavy-tailed value frequencies
    p = np.load(tmp_path / "p.npy")
    assert p.shape == (30000,) and 0.2 < df[0].mean() < 0.35 and abs(p.mean() - df[0].mean()) < 0.02
    generate(str(tmp_path / "again.txt"), 30000, seed=1, progress=False)
    assert open(tmp_path / "again.txt").read() == open(tmp_path / "train.txt").read()
