"""A validation split decides, the test split only reports: by default preprocessing keeps the end of the training
lines (the period just before the test lines) as validation and leaves the test split as it was; training evaluates
on it, keeps the best checkpoint by its logloss, stops early on it, says when it starts to overfit, and reports the
test split once, at the end, on the best model."""
import os

import numpy as np
import pytest

from fixtures.datasets import read_split
from fixtures.paths import CRITEO_SAMPLE, make_cfg
from src.data.preprocess import preprocess
from src.training import checkpoint
from src.training.checkpoint.header import describe
from src.training.trainer import Trainer

OVERFITS = ("--optimizer=adagrad", "--learning_rate=0.05", "--interaction_op=dot", "--batch_size=64",
            "--warmup_steps=0", "--decay_start_step=0", "--decay_steps=0")   # best after epoch 1 on the real sample


def test_validation_is_the_end_of_the_training_lines_and_test_stays(real_dataset, real_val):
    import json
    meta = json.load(open(os.path.join(real_val, "metadata.json")))
    assert meta["samples"] == {"train": 1457, "val": 257, "test": 285}
    assert meta["split"] == "last 285 lines (N // 7) are held out as the test split; the 257 lines before them " \
                            "(val_size) are validation"
    old = os.path.join(real_dataset[0], "mindrecord")   # the same lines (their ids follow the training lines' vocabulary)
    for a, b in zip(read_split(real_val, "test")[1:], read_split(old, "test")[1:]):
        np.testing.assert_array_equal(a, b)
    lines = open(CRITEO_SAMPLE).read().splitlines()[1457:1714]
    _, dense, label = read_split(real_val, "val")
    assert label[:, 0].tolist() == [float(line.split("\t")[0]) for line in lines]
    i1 = [np.log1p(max(int(line.split("\t")[1] or 0), 0)) for line in lines]
    np.testing.assert_allclose(dense[:, 0], i1, rtol=1e-6)


def test_day_files_validate_on_the_end_of_the_last_training_day(tmp_path):
    from src.data.synthetic import generate_days
    generate_days(str(tmp_path), 3, 300, seed=2, progress=False)
    meta = preprocess(make_cfg(f"--data_path={tmp_path}", "--pack_size=32", "--workers=1", "--val_size=0.1"),
                      progress=False)
    assert meta["samples"] == {"train": 570, "val": 30, "test": 300}
    assert "the last 30 lines of day_1 (val_size) are validation" in meta["split"]
    _, _, label = read_split(meta["dataset_path"], "val")
    want = [float(line.split("\t")[0]) for line in open(tmp_path / "day_1").read().splitlines()[-30:]]
    assert label[:, 0].tolist() == want
    _, _, label = read_split(meta["dataset_path"], "test")
    assert label[:, 0].tolist() == [float(line.split("\t")[0]) for line in open(tmp_path / "day_2")]


def test_keep_best_takes_the_first_epochs_model_and_says_the_cliff(real_val, tmp_path):
    """4 epochs of a recipe that overfits after the first: the cliff line names epoch 2, the best checkpoint is step
    22's, a folder resolves to it (saying so), a resume to the newest, and the test split is reported once, on the
    best model: the metrics eval.py gets from the folder."""
    from src.inference.export import load_inference_net
    from src.model_utils.config import parse_cli
    from src.training.evaluation import evaluate
    log = tmp_path / "eval.log"
    tr = Trainer(make_cfg(f"--dataset_path={real_val}", f"--ckpt_path={tmp_path / 'ck'}", "--train_epochs=4",
                          f"--eval_file_name={log}", "--loss_file_name=", *OVERFITS), log=lambda *_: None)
    assert tr.run()["global_step"] == 88
    lines = log.read_text().splitlines()
    cliff = [line for line in lines if line.startswith("overfitting:")]
    assert len(cliff) == 1 and " at epoch 2, step 44 is " in cliff[0] and "(epoch 1, step 22)" in cliff[0] and \
        "keep_best kept the checkpoint of step 22" in cliff[0] and "Zhang et al., CIKM 2022" in cliff[0]
    assert sum("split: val" in line for line in lines) == 4
    test = [line for line in lines if "split: test" in line]
    assert len(test) == 1 and "model: best, epoch: 1, step: 22," in test[0]
    notes = []
    best = checkpoint.resolve(str(tmp_path / "ck"), "dlrm", notes.append)
    assert os.path.basename(best) == "dlrm-best.safetensors" and describe(best).step == 22
    assert len(notes) == 1 and "taking the best checkpoint of run" in notes[0] and "step 22 (validation logloss" \
        in notes[0] and "the run's newest checkpoint is step 88" in notes[0]
    assert checkpoint.newest(str(tmp_path / "ck"), "dlrm") == ("full", str(tmp_path / "ck" / "dlrm-4_88.safetensors"))
    got = evaluate(load_inference_net(parse_cli([]), str(tmp_path / "ck"))[0], real_val, "test", 300)
    assert got["logloss"] == pytest.approx(tr.eval_results[-1]["logloss"], abs=1e-7)


def test_early_stop_after_patience_evaluations_without_improvement(real_val, tmp_path):
    log = tmp_path / "eval.log"
    tr = Trainer(make_cfg(f"--dataset_path={real_val}", f"--ckpt_path={tmp_path / 'ck'}", "--train_epochs=4",
                          f"--eval_file_name={log}", "--loss_file_name=", "--early_stop_patience=2", *OVERFITS),
                 log=lambda *_: None)
    assert tr.run()["global_step"] == 66                       # epochs 2 and 3 no better than epoch 1
    lines = log.read_text().splitlines()
    assert lines[-2] == ("early stop: the validation logloss has not improved for 2 evaluations (best "
                         f"{tr.watch.best['logloss']:.6f} at epoch 1, step 22; early_stop_patience 2)")
    assert "split: test, model: best, epoch: 1, step: 22," in lines[-1]
