"""The training loop: resume after a kill (also in another layout), the NaN stop, checkpoints that do not fit,
and a model that learns."""
import os
from dataclasses import replace

import numpy as np
import pytest
from mindspore import Tensor

from fixtures.paths import make_cfg
from src.training import checkpoint
from src.training.checkpoint import CheckpointError
from src.training.trainer import Trainer, TrainingDiverged

SMALL = ["--bottom_mlp_args=[32,16]", "--top_mlp_args=[32,1]"]


def _cfg(ds, tmp, *extra):
    return make_cfg(f"--dataset_path={ds}", f"--ckpt_path={tmp}/ckpt", f"--loss_file_name={tmp}/loss.log",
                    f"--eval_file_name={tmp}/eval.log", "--batch_size=256", "--log_interval_steps=10",
                    "--test_batch_size=1000", *SMALL, *extra)


def _params(trainer):
    return {p.name: p.asnumpy().copy() for p in trainer.state_params()}


RECIPES = {"sgd": ["--optimizer=sgd"], "adagrad": ["--optimizer=adagrad", "--learning_rate=0.01"],
           "dcn_adam_schedule": ["--interaction_op=dcn", "--dcn_num_layers=2", "--dcn_low_rank_dim=8", "--optimizer=adam",
                                 "--learning_rate=0.003", "--warmup_steps=10", "--decay_start_step=25",
                                 "--decay_steps=30"]}


@pytest.mark.parametrize("recipe", ["adagrad", "sgd", pytest.param("dcn_adam_schedule", marks=pytest.mark.slow)])
def test_kill_and_resume_gives_the_same_parameters(synth_dataset, tmp_path, recipe):
    """60 steps uninterrupted against 20 + 20 + 20 resumed (two epochs of 33 steps: one resume mid-epoch 1, one in
    epoch 2): every parameter and optimizer state (Adam's moments and step count, the accumulators) to 1e-6."""
    from src.training.schedule import lr_at
    ds = os.path.join(synth_dataset[0], "mindrecord")
    extra = ["--train_epochs=2", "--do_eval=False", *RECIPES[recipe]]
    full = Trainer(_cfg(ds, tmp_path / "a", *extra, "--save_checkpoint=False"), log=lambda *_: None)
    full.run(max_steps=60)
    for stop in (20, 40, 60):
        part = Trainer(_cfg(ds, tmp_path / "b", *extra, "--save_checkpoint_steps=20", f"--resume={stop > 20}"),
                       log=lambda *_: None)
        assert part.run(max_steps=stop)["global_step"] == stop
        if stop == 20:
            ck = checkpoint.list_checkpoints(str(tmp_path / "b" / "ckpt"), "dlrm")
            assert [os.path.basename(c) for c in ck] == ["dlrm-1_20.safetensors"]
    a, b = _params(full), _params(part)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=k)
    if recipe == "dcn_adam_schedule":
        assert any("adam_m" in k for k in a) and any("cross" in k for k in a)
        assert part.current_lr == lr_at(59, 0.003, 10, 25, 30)


def test_an_epoch_resumed_with_another_batch_size_continues_on_the_rest_of_it(real_ds, tmp_path):
    """Killed mid-epoch at batch 128 (layout 1 x 128, 5 of 13 steps done), resumed at batch 96: the rest of the
    epoch is the samples the first run had not reached, in global batches of 96, then a regular epoch at 96; the
    result equals one process trained over exactly those batches from the same checkpoint."""
    from fixtures.distributed import global_batches, leftover_batches, reference
    small = [*SMALL, "--optimizer=adagrad", "--learning_rate=0.01"]
    first = Trainer(make_cfg(f"--dataset_path={real_ds}", f"--ckpt_path={tmp_path}/ck", "--batch_size=128",
                             "--save_checkpoint_steps=5", "--do_eval=False", "--loss_file_name=", *small),
                    log=lambda *_: None)
    first.run(max_steps=5)
    start = first.last_checkpoint
    second = Trainer(make_cfg(f"--dataset_path={real_ds}", f"--ckpt_path={tmp_path}/ck", "--batch_size=96",
                              "--train_epochs=2", "--resume=True", "--do_eval=False", "--loss_file_name=", *small),
                     log=lambda *_: None)
    pos = second.run()
    rest = list(leftover_batches(real_ds, (1, 128, 5), 1, 96, epoch=0))
    assert len(rest) == (13 - 5) * 128 // 96 == 10
    assert pos == {"global_step": 5 + 10 + 1714 // 96, "epoch": 2, "step_in_epoch": 0}
    want = reference(real_ds, rest + list(global_batches(real_ds, 1, 96, epoch=1)), *small, start=start,
                     first_step=5)
    got = {checkpoint.canonical(p.name): p.asnumpy() for p in second.state_params()}
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v, atol=1e-6, err_msg=k)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(synth_dataset, tmp_path):
    ds = os.path.join(synth_dataset[0], "mindrecord")
    tr = Trainer(_cfg(ds, tmp_path, "--do_eval=False", "--save_checkpoint_steps=2", "--keep_checkpoint_max=1"),
                 log=lambda *_: None)
    tr.run(max_steps=2)
    good = tr.last_checkpoint
    bias = tr.net.over_arch.trainable_params()[-1]
    bias.set_data(Tensor(np.full(bias.shape, np.inf, np.float32)))  # a diverged parameter
    tr.settings = replace(tr.settings, checkpoints=replace(tr.settings.checkpoints, resume=False))
    with pytest.raises(TrainingDiverged, match=r"loss is (nan|inf) at epoch 1, step \d+: training stopped; "
                                               r"last good checkpoint: .*dlrm-1_2\.safetensors"):
        tr.run(max_steps=50)
    assert checkpoint.list_checkpoints(str(tmp_path / "ckpt"), "dlrm")[-1] == good


def test_checkpoint_from_another_dataset_is_refused(real_dataset, synth_dataset, tmp_path):
    ds = os.path.join(synth_dataset[0], "mindrecord")
    tr = Trainer(_cfg(ds, tmp_path, "--do_eval=False"), log=lambda *_: None)
    tr.run(max_steps=1)
    other = Trainer(_cfg(os.path.join(real_dataset[0], "mindrecord"), tmp_path / "o"), log=lambda *_: None)
    arrays, _ = checkpoint.load(tr.last_checkpoint)
    with pytest.raises(CheckpointError, match=r"parameter 'sparse_arch.table' has shape \(\d+, 16\), the model "
                                              r"built from the config expects \(\d+, 16\)"):
        checkpoint.restore(other.state_params(), arrays, tr.last_checkpoint)
    with pytest.raises(CheckpointError, match=r"holds another model than the config describes: optimizer=sgd "
                                              r"\(config: adagrad\); train with"):
        Trainer(_cfg(ds, tmp_path, "--optimizer=adagrad", "--resume=True"), log=lambda *_: None).resume()
    with pytest.raises(CheckpointError, match=r"top_mlp_args=\[32, 1\] \(config: \[16, 1\]\)"):
        Trainer(_cfg(ds, tmp_path, "--top_mlp_args=[16,1]", "--resume=True"), log=lambda *_: None).resume()


def test_yaml_table_sizes_must_agree_with_the_dataset(synth_dataset, tmp_path):
    from src.data.packed_format import DatasetError
    ds = os.path.join(synth_dataset[0], "mindrecord")
    with pytest.raises(DatasetError, match="categorical_feature_sizes in the config disagrees"):
        Trainer(_cfg(ds, tmp_path, "--categorical_feature_sizes=" + str([5] * 26)))
    sizes = synth_dataset[1]["table_sizes"]
    Trainer(_cfg(ds, tmp_path, "--categorical_feature_sizes=" + str(sizes).replace(" ", "")))


def test_synthetic_model_learns_towards_the_best_auc(synth_dataset, tmp_path):
    from src.tools.best_auc import best_test_metrics
    ds = os.path.join(synth_dataset[0], "mindrecord")
    tr = Trainer(_cfg(ds, tmp_path, "--train_epochs=3", "--save_checkpoint=False", "--batch_size=128"),
                 log=lambda *_: None)
    tr.run()
    best = best_test_metrics(ds, os.path.join(synth_dataset[0], "train_prob.npy"))
    aucs = [r["auc"] for r in tr.eval_results]
    assert len(aucs) == 3 and all(r["samples"] == 2857 for r in tr.eval_results)
    assert aucs[-1] > aucs[0] and aucs[-1] > 0.66 and aucs[-1] < best["auc"] + 0.01


@pytest.mark.slow
def test_target_auc_stops_at_the_first_evaluation_that_reaches_it(real_val, real_ds, tmp_path):
    """target_auc, MLPerf style, on the validation split: evaluations every 5 steps; a reachable target stops training
    right after the first one at or above it, with the time-to-target line in eval.log (training time without the
    evaluations, wall time since the process started), then the test split is reported once; an unreachable one
    trains to the end and says it was not reached. A dataset without a validation split cannot decide."""
    import re
    base = (f"--dataset_path={real_val}", "--batch_size=64", "--eval_interval_steps=5", "--test_batch_size=300",
            "--save_checkpoint=False", "--loss_file_name=", "--train_epochs=1")
    tr = Trainer(make_cfg(*base, f"--eval_file_name={tmp_path / 'a.log'}", "--target_auc=0.0001"), log=lambda *_: None)
    assert tr.run()["global_step"] == 5 and len(tr.eval_results) == 2                 # validation, then test
    lines = (tmp_path / "a.log").read_text().splitlines()
    m = re.fullmatch(r"reached auc ([0-9.]+) at step 5, epoch 1, after ([0-9.]+) s of training \(([0-9.]+) s wall\); "
                     r"target_auc 0.0001", lines[1])
    assert m and float(m.group(1)) == pytest.approx(tr.eval_results[0]["auc"], abs=1e-6), lines
    assert float(m.group(2)) < float(m.group(3))
    assert tr.reached["step"] == 5 and tr.reached["train_seconds"] == pytest.approx(float(m.group(2)), abs=0.05)
    assert "split: val, epoch: 1, step: 5," in lines[0] and "split: test, model: newest, epoch: 0, step: 5," in lines[2]
    tr = Trainer(make_cfg(*base, f"--eval_file_name={tmp_path / 'b.log'}", "--target_auc=0.99"), log=lambda *_: None)
    assert tr.run()["global_step"] == 1456 // 64 and len(tr.eval_results) == 5 + 1   # 4 + epoch end; then test
    lines = (tmp_path / "b.log").read_text().splitlines()
    assert re.fullmatch(r"target auc 0.99 not reached: best validation auc [0-9.]+ in 5 evaluation\(s\), after "
                        r"[0-9.]+ s of training \([0-9.]+ s wall\)", lines[-2]) and "split: test" in lines[-1]
    with pytest.raises(Exception, match=r"target_auc=0.5 needs evaluations: set do_eval=True or eval_interval_steps"):
        make_cfg(f"--dataset_path={real_ds}", "--target_auc=0.5", "--do_eval=False")
    with pytest.raises(ValueError, match=r"target_auc and early_stop_patience decide on the validation split, and "
                                         r".* has none: preprocess again with val_size"):
        Trainer(make_cfg(f"--dataset_path={real_ds}", "--target_auc=0.5"), log=lambda *_: None)


def test_decay_steps_minus_one_decays_to_the_last_step_of_training(real_ds, tmp_path):
    """decay_steps = -1: after the warmup the rate decays (power 2) over exactly the run's remaining steps (2 epochs
    of 26 steps at batch 64): the rates set before each step are lr_at's with decay_steps = 52 - decay_start_step."""
    from src.training.schedule import MIN_LR, lr_at
    tr = Trainer(make_cfg(f"--dataset_path={real_ds}", "--batch_size=64", "--train_epochs=2", "--do_eval=False",
                          "--save_checkpoint=False", "--loss_file_name=", "--learning_rate=0.01", "--warmup_steps=3",
                          "--decay_start_step=3", "--decay_steps=-1", *SMALL), log=lambda *_: None)
    seen, set_lr = [], tr.step.set_learning_rate
    tr.step.set_learning_rate = lambda lr, table_lr=None: (seen.append(lr), set_lr(lr, table_lr))
    assert tr.run()["global_step"] == 52 and tr.last_step == 52
    want = [lr_at(s, 0.01, 3, 3, 49) for s in range(52)]
    assert seen == [lr for i, lr in enumerate(want) if lr != (want[i - 1] if i else 0.01)]
    assert MIN_LR < seen[-1] < 1e-5 and seen[2] == 0.01
