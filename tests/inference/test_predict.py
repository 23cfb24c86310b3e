"""Batch scoring of raw files with a model bundle (predict.py): the raw lines of each fixture's test split give
eval.py's probabilities within 1e-6 (Criteo with a vocabulary, Terabyte day files hashed, the Avazu and MovieLens
CSVs); the label column is optional; bad lines keep their row; the bundle alone is enough; a changed bundle, a missing
column and a header that disagrees are one-line errors; workers, gzip and globs give the same output."""
import gzip
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from fixtures.commands import run_py
from fixtures.paths import CRITEO_SAMPLE, make_cfg
from src.inference.bundle import Bundle
from src.inference.scoring import ScoringError, score_files
from src.data.feature_spec import FeatureSpecError


def _eval_probs(bundle_kind, bundles):
    from src.inference.export import load_inference_net
    from src.model_utils.config import parse_cli
    from src.training.evaluation import predict_split
    _, ds, ckpt, _ = bundles[bundle_kind]
    net = load_inference_net(parse_cli([]), ckpt)[0]
    return predict_split(net, ds, "test", 1000)


def _score(bundle, raw, out, **kw):
    summary = score_files(Bundle(bundle), raw, str(out), **{"workers": 1, **kw})
    return summary, pd.read_csv(out, keep_default_na=False, dtype=str)


@pytest.mark.parametrize("kind", ["criteo", "terabyte", "csv", "multihot"])
def test_raw_test_lines_give_evals_probabilities(bundles, kind, tmp_path):
    folder, _, _, raw = bundles[kind]
    want, label = _eval_probs(kind, bundles)
    summary, got = _score(folder, raw, tmp_path / "out.csv")
    prob = got["probability"].replace("", "nan").astype(np.float64).to_numpy()
    assert len(prob) == summary.lines and np.count_nonzero(~np.isnan(prob)) == len(want)
    assert np.max(np.abs(prob[~np.isnan(prob)] - want)) <= 1e-6
    m = summary.metrics                                     # the label was there: the metrics are printed
    want, label = want.astype(np.float64), label.astype(np.float64)
    assert m["samples"] == len(want) and abs(m["calibration"] - want.mean() / label.mean()) < 1e-5
    from src.training.metrics import ctr_metrics
    exact = ctr_metrics(prob[~np.isnan(prob)], label, Bundle(folder).train_ctr)   # the metrics of what was written
    assert all(abs(m[k] - exact[k]) < 1e-6 for k in ("auc", "logloss", "ne", "calibration"))
    # against eval's probabilities: the runtimes agree within 1e-6 a row, which a confident wrong row (p ~ 1e-5 on a
    # click; the MovieLens model is overfitted) turns into ~1e-5 of logloss, so relative 1e-4 there
    ref = ctr_metrics(want, label, Bundle(folder).train_ctr)
    assert abs(m["auc"] - ref["auc"]) < 1e-4 and abs(m["logloss"] - ref["logloss"]) < 1e-4 * ref["logloss"]
    assert abs(m["ne"] - ref["ne"]) < 1e-4 * ref["ne"]


def test_mindspore_runtime_gives_evals_probabilities_too(bundles, tmp_path):
    folder, _, _, raw = bundles["criteo"]
    want, _ = _eval_probs("criteo", bundles)
    _, got = _score(folder, raw, tmp_path / "out.csv", runtime="mindspore")
    assert np.max(np.abs(got["probability"].astype(np.float64).to_numpy() - want)) <= 1e-7


def test_without_the_label_column_and_with_a_key(bundles, tmp_path):
    """Criteo lines without their label field score the same; bad lines keep their row, empty, counted by reason; a
    key column (C1) leads every row, bad ones too where they hold it."""
    folder, _, _, raw = bundles["criteo"]
    lines = [line.split("\t", 1)[1] for line in open(raw).read().splitlines()]       # 39 fields: no label
    fields = lines[3].split("\t")
    fields[1] = "x"                                                                    # I2 is not a number
    lines[3] = "\t".join(fields)
    lines[7] = ""                                                                      # an empty line
    lines[9] = "\t".join(lines[9].split("\t")[:20])                                   # too few fields
    unlabeled = tmp_path / "new.tsv"
    unlabeled.write_text("\n".join(lines) + "\n")
    _, before = _score(folder, raw, tmp_path / "a.csv")
    summary, got = _score(folder, str(unlabeled), tmp_path / "b.csv", key="C1")
    assert list(got.columns) == ["C1", "probability"] and len(got) == len(lines) == summary.lines
    assert summary.metrics is None
    assert summary.bad["dense"] == 1 and summary.bad["field_count"] == 2
    bad = got["probability"] == ""
    assert list(np.flatnonzero(bad)) == [3, 7, 9]
    np.testing.assert_array_equal(got["probability"][~bad], before["probability"][~bad])
    want_keys = [line.split("\t")[13] if line else "" for line in lines]
    assert list(got["C1"]) == want_keys


def test_strict_names_file_line_and_column_and_writes_nothing(bundles, tmp_path):
    folder, _, _, raw = bundles["criteo"]
    lines = open(raw).read().splitlines()
    fields = lines[5].split("\t")
    fields[3] = "3.5"
    lines[5] = "\t".join(fields)
    bad = tmp_path / "bad.tsv"
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.csv"
    out.write_text("probability\n0.5\n")                                # an earlier output: kept on failure
    r = run_py("predict.py", f"--model_path={folder}", f"--input_path={bad}", f"--output_path={out}", "--strict=1")
    errors = [line for line in r.stderr.splitlines() if line.strip() and "predict:" not in line]
    assert r.returncode == 2 and errors == [f"predict error: {bad}:6: dense value is not an integer (column I3) "
                                            f"(strict=1 stops at the first bad line; strict=0 skips and counts them)"]
    assert out.read_text() == "probability\n0.5\n" and sorted(os.listdir(tmp_path)) == ["bad.tsv", "out.csv"]


def test_a_file_of_the_users_is_never_replaced(bundles, tmp_path):
    folder, _, _, raw = bundles["criteo"]
    mine = tmp_path / "notes.csv"
    mine.write_text("my,notes\n")
    with pytest.raises(ScoringError, match="is not an earlier output of predict.py"):
        score_files(Bundle(folder), raw, str(mine), workers=1)
    assert mine.read_text() == "my,notes\n"


def test_a_missing_or_unknown_column_is_one_line(bundles, tmp_path):
    folder, _, _, raw = bundles["multihot"]
    text = open(raw).read().replace("genres", "genre", 1)
    (tmp_path / "a.csv").write_text(text)
    with pytest.raises(FeatureSpecError, match="column 'genres', which the model reads, is missing from a.csv"):
        score_files(Bundle(folder), str(tmp_path / "a.csv"), str(tmp_path / "o.csv"), workers=1)
    lines = open(raw).read().splitlines()
    (tmp_path / "b.csv").write_text("\n".join([lines[0] + ",extra"] + [line + ",1" for line in lines[1:]]) + "\n")
    r = run_py("predict.py", f"--model_path={folder}", f"--input_path={tmp_path / 'b.csv'}",
               f"--output_path={tmp_path / 'o.csv'}")
    assert r.returncode == 2 and r.stderr.strip().endswith("b.csv has column 'extra', which the model's feature spec "
                                                           "does not name: the data is laid out otherwise than in "
                                                           "training")
    assert not os.path.exists(tmp_path / "o.csv")


def test_a_changed_bundle_is_refused_naming_the_file(bundles, tmp_path):
    copy = shutil.copytree(bundles["criteo"][0], tmp_path / "b")
    with open(copy / "vocab.npz", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01")
    r = run_py("predict.py", f"--model_path={copy}", f"--input_path={CRITEO_SAMPLE}",
               f"--output_path={tmp_path / 'o.csv'}")
    assert r.returncode == 2 and r.stderr.strip() == (f"predict error: bundle file '{copy / 'vocab.npz'}' fails its "
                                                      f"checksum: it changed after the bundle was written; export the "
                                                      f"bundle again")


def test_workers_gzip_and_globs_give_the_same_output(bundles, tmp_path):
    folder, ds, _, _ = bundles["terabyte"]
    days = os.path.dirname(ds)
    (tmp_path / "gz").mkdir()
    for d in range(3):
        with open(os.path.join(days, f"day_{d}"), "rb") as f, gzip.open(tmp_path / "gz" / f"day_{d}.gz", "wb") as g:
            g.write(f.read())
    _, plain = _score(folder, os.path.join(days, "day_*"), tmp_path / "plain.csv")
    from src.inference import scoring
    small, scoring.PIECE_BYTES = scoring.PIECE_BYTES, 20000          # several pieces a file
    try:
        _, two = _score(folder, os.path.join(days, "day_*"), tmp_path / "two.csv", workers=2)
        _, gz = _score(folder, str(tmp_path / "gz" / "day_*.gz"), tmp_path / "gz.csv", workers=2)
    finally:
        scoring.PIECE_BYTES = small
    assert len(plain) == 3 * 400
    assert (tmp_path / "plain.csv").read_bytes() == (tmp_path / "two.csv").read_bytes() == \
        (tmp_path / "gz.csv").read_bytes()


def test_the_bundle_alone_scores_raw_rows(tmp_path):
    """A bundle made from a fresh dataset and checkpoint scores with both deleted (predict.py as a user runs it)."""
    from src.data.preprocess import preprocess
    from src.inference.export import load_inference_net
    from src.inference.bundle import write_bundle
    from src.model_utils.config import parse_cli
    from src.training.evaluation import predict_split
    from src.training.trainer import Trainer
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(CRITEO_SAMPLE, data / "train.txt")
    meta = preprocess(make_cfg(f"--data_path={data}", "--pack_size=100", "--workers=1"), progress=False)
    Trainer(make_cfg(f"--dataset_path={meta['dataset_path']}", f"--ckpt_path={tmp_path / 'ckpt'}", "--do_eval=False",
                     "--loss_file_name="), log=lambda *_: None).run(max_steps=6)
    net, path, pos, model = load_inference_net(parse_cli([]), str(tmp_path / "ckpt"))
    want, _ = predict_split(net, meta["dataset_path"], "test", 1000)
    write_bundle(net, str(tmp_path / "bundle"), {"checkpoint": path, "step": pos["global_step"], "model": model},
                 meta["dataset_path"], meta, log=lambda *_: None)
    raw = tmp_path / "test.tsv"
    raw.write_text("".join(open(CRITEO_SAMPLE).readlines()[-285:]))
    shutil.rmtree(data)
    shutil.rmtree(tmp_path / "ckpt")
    r = run_py("predict.py", f"--model_path={tmp_path / 'bundle'}", f"--input_path={raw}",
               f"--output_path={tmp_path / 'out.csv'}")
    assert r.returncode == 0, r.stderr[-1500:]
    assert "scored 285 lines (285 with a probability, 0 bad)" in r.stdout and "auc: " in r.stdout
    got = pd.read_csv(tmp_path / "out.csv")["probability"].to_numpy()
    assert np.max(np.abs(got - want)) <= 1e-6
