"""Runs never mix: every checkpoint records the training run that wrote it; a folder resolves to the newest checkpoint
of its most recent run (never the highest step across runs), retention prunes only the current run's files, a run
never replaces another run's file of the same name, shard sets are whole only within one run, and a resume goes on
with the run it resumes."""
import os

import numpy as np
import pytest

from fixtures.paths import make_cfg
from src.training import checkpoint
from src.training.checkpoint.header import describe
from src.training.trainer import Trainer


def _save(folder, step, run_id, written, shard=None, name=None):
    """A tiny checkpoint of run `run_id` at `step`, its run record saying it was written at `written`."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name or checkpoint.ckpt_name("dlrm", 1, step))
    model = {"run": {"id": run_id, "started": "2026-12-05T00:00:00", "written": written}}
    checkpoint.save(path, [("w", np.full((2, 2), step, np.float32))], {"global_step": step, "epoch": 0,
                                                                          "step_in_epoch": step},
                    shard=shard, model=model)
    return path


def test_a_folder_resolves_to_the_most_recent_runs_newest_never_the_highest_step(tmp_path):
    old = [_save(tmp_path, s, "20261201-000000-aaaaaa", 100.0 + s) for s in (100, 200, 300)]
    new = [_save(tmp_path, s, "20261202-000000-bbbbbb", 1000.0 + s) for s in (10, 20)]
    notes = []
    assert checkpoint.resolve(str(tmp_path), "dlrm", notes.append) == new[-1]
    assert notes == [f"checkpoint folder '{tmp_path}' holds checkpoints of 2 training runs; taking the most recent "
                     f"run's (20261202-000000-bbbbbb, started 2026-12-05T00:00:00) newest: dlrm-1_20.safetensors, "
                     f"step 20"]
    assert checkpoint.newest(str(tmp_path), "dlrm") == ("full", new[-1])
    os.utime(old[0], (2e9, 2e9))            # file times do not decide: a copied folder has new ones
    assert checkpoint.resolve(str(tmp_path), "dlrm") == new[-1]
    notes.clear()
    assert checkpoint.resolve(new[0], "dlrm", notes.append) == new[0] and not notes      # a file is itself


def test_retention_never_deletes_the_current_runs_newest_when_an_older_run_has_higher_steps(tmp_path):
    old = [_save(tmp_path, s, "run-old", 100.0 + s) for s in (100, 200, 300)]
    mine = [_save(tmp_path, s, "run-new", 1000.0 + s) for s in (10, 20, 30)]
    assert checkpoint.keep_newest(str(tmp_path), "dlrm", 1, "run-new") == mine[:2]
    assert sorted(checkpoint.list_checkpoints(str(tmp_path), "dlrm")) == sorted(old + mine[2:])


def test_a_run_never_replaces_another_runs_file_of_the_same_name(tmp_path):
    theirs = _save(tmp_path, 10, "20261201-000000-aaaaaa", 100.0)
    path = checkpoint.free_path(str(tmp_path), "dlrm", 1, 10, "20261202-000000-bbbbbb")
    assert os.path.basename(path) == "dlrm-1_10-rbbbbbb.safetensors"
    _save(tmp_path, 10, "20261202-000000-bbbbbb", 200.0, name=os.path.basename(path))
    assert describe(theirs).run_id == "20261201-000000-aaaaaa"
    assert sorted(checkpoint.checkpoints_by_step(str(tmp_path), "dlrm")) == sorted([(10, theirs), (10, path)])
    assert checkpoint.free_path(str(tmp_path), "dlrm", 1, 10, "20261201-000000-aaaaaa") == theirs  # its own: in place
    assert checkpoint.resolve(str(tmp_path), "dlrm") == path


def test_shard_sets_are_whole_only_within_one_run(tmp_path):
    def shard(rank, size=2):
        return {"rows": 4, "rank": rank, "size": size, "segments": [(2 * rank, 2 * rank + 2)]}
    ranks = [str(tmp_path / f"rank_{k}") for k in range(2)]
    old = [_save(ranks[k], 50, "run-a", 100.0, shard(k)) for k in range(2)]
    _save(ranks[0], 5, "run-b", 200.0, shard(0))                  # run b's rank 1 has not written step 5 yet
    assert checkpoint.newest(str(tmp_path), "dlrm") == ("shards", {0: old[0], 1: old[1]})
    _save(ranks[1], 5, "run-c", 300.0, shard(1))                  # another run's rank 1 does not complete it
    assert checkpoint.newest(str(tmp_path), "dlrm") == ("shards", {0: old[0], 1: old[1]})
    new = _save(ranks[1], 5, "run-b", 300.0, shard(1), name="dlrm-1_5-rb.safetensors")
    assert checkpoint.newest(str(tmp_path), "dlrm") == ("shards", {0: os.path.join(ranks[0], "dlrm-1_5.safetensors"),
                                                                    1: new})
    merged = checkpoint.merge(str(tmp_path), "dlrm")
    assert describe(merged).run_id == "run-b" and describe(merged).step == 5


def test_two_runs_in_one_folder_resolve_retain_and_resume_by_run(real_ds, tmp_path):
    """Run a trains 12 steps; run b (another batch size) only 6 in the same folder, keeping 1 checkpoint: the folder
    resolves to b's, a's files stay, and b resumed goes on as run b."""
    def cfg(*extra):
        return make_cfg(f"--dataset_path={real_ds}", f"--ckpt_path={tmp_path}", "--do_eval=False",
                        "--loss_file_name=", "--save_checkpoint_steps=3", *extra)
    a = Trainer(cfg("--batch_size=128"), log=lambda *_: None)
    a.run(max_steps=12)
    a_files = checkpoint.list_checkpoints(str(tmp_path), "dlrm")
    b = Trainer(cfg("--batch_size=256", "--keep_checkpoint_max=1"), log=lambda *_: None)
    b.run()
    b_id = b.run_info["id"]
    assert b_id != a.run_info["id"] and b.position["global_step"] == 6
    assert checkpoint.resolve(str(tmp_path), "dlrm") == b.last_checkpoint
    assert os.path.basename(b.last_checkpoint) == "dlrm-1_6-r" + b_id.replace("-", "")[-6:] + ".safetensors"
    mine = [p for p in checkpoint.list_checkpoints(str(tmp_path), "dlrm") if describe(p).run_id == b_id]
    assert mine == [b.last_checkpoint]                             # b kept 1 of its own, a's are all there
    assert set(a_files) <= set(checkpoint.list_checkpoints(str(tmp_path), "dlrm"))
    notes = []
    resumed = Trainer(cfg("--batch_size=256", "--keep_checkpoint_max=1", "--resume=True", "--train_epochs=2"),
                      log=notes.append)
    resumed.run(max_steps=7)
    assert resumed.run_info["id"] == b_id and describe(resumed.last_checkpoint).run_id == b_id
    assert any("holds checkpoints of 2 training runs" in n and "step 6" in n for n in notes)
    assert describe(resumed.last_checkpoint).model["dataset"]["table_sizes"] == resumed.meta["table_sizes"]


@pytest.mark.parametrize("what", ["dense", "rows", "vocab"])
def test_mismatch_names_both_values(real_dataset, what):
    from src.training.checkpoint.fit import mismatch
    from src.model_utils.spec import criteo_features, DLRMSpec
    meta = dict(real_dataset[1])
    sizes = list(meta["table_sizes"])
    dense = 13
    if what == "dense":
        dense = 12
    elif what == "rows":
        sizes[2] += 5
    spec = DLRMSpec(features=tuple(criteo_features(sizes, dense)), emb_dim=16, bottom=(16,), top=(8, 1))
    model = {"spec": spec.to_json(), "vocab_fingerprint": meta["vocab_fingerprint"] if what != "vocab" else "f" * 64}
    text = mismatch(model, meta)
    assert text == {"dense": "checkpoint takes 12 dense features; dataset has 13",
                    "rows": f"checkpoint has {sum(sizes):,} table rows for 26 slots; dataset ids need "
                            f"{sum(sizes) - 5:,}",
                    "vocab": f"its ids mean something else: checkpoint vocab_fingerprint ffffffffffff..., dataset "
                             f"{meta['vocab_fingerprint'][:12]}... (another vocabulary, threshold, max_ind_range or "
                             f"input)"}[what]
    model["vocab_fingerprint"] = meta["vocab_fingerprint"]
    model["spec"] = DLRMSpec(features=tuple(criteo_features(meta["table_sizes"])), emb_dim=16, bottom=(16,),
                             top=(8, 1)).to_json()
    assert mismatch(model, meta) is None
