"""Faults: `kill -9` in the middle of each long-running command, then the same command again; and a write
that fails for lack of space (a file-size limit). Each must leave the previous outputs as they were,
and the rerun must end equal to an uninterrupted run."""
import glob
import json
import os
import shutil

import numpy as np
import pytest

from fixtures.commands import env, kill_when, limited, ok
from fixtures.datasets import read_split
from fixtures.paths import PY
from src.training import checkpoint

pytestmark = pytest.mark.slow


def _files(dataset):
    return json.load(open(os.path.join(dataset, "metadata.json")))["files"]


@pytest.fixture(scope="module")
def big_text(tmp_path_factory):
    """60k synthetic lines, cut into 1 MiB pieces and 6,000-line parts: 15 pieces and 8 training parts, so a run
    can be killed between any two of them."""
    from src.data.synthetic import generate
    d = tmp_path_factory.mktemp("big")
    generate(str(d / "train.txt"), 60_000, seed=3, progress=False)
    return str(d / "train.txt")


def test_kill_during_preprocessing_then_rerun(big_text, tmp_path):
    """Killed in phase B (after its first part file): the rerun keeps the finished pieces and parts and ends
    byte-identical to an uninterrupted run (which used another worker count)."""
    ref, run = tmp_path / "ref", tmp_path / "run"
    for d in (ref, run):
        d.mkdir()
        os.symlink(big_text, d / "train.txt")
    cmd = lambda d, *extra: [PY, "src/preprocess_data.py", f"--data_path={d}",    # noqa: E731
                             "--shuffle_bucket_lines=6000", "--chunk_bytes=1048576", *extra]
    ok(cmd(ref, "--workers=2"))
    ok(cmd(run, "--threshold=3"))                               # the user's previous dataset
    before = _files(run / "mindrecord")
    kill_when(cmd(run, "--workers=1"), lambda: glob.glob(str(run / ".mindrecord.work" / "parts" / "*.done")))
    assert _files(run / "mindrecord") == before                 # untouched, still readable
    assert json.load(open(run / "mindrecord" / "metadata.json"))["threshold"] == 3
    assert glob.glob(str(run / ".mindrecord.work" / "pieces" / "*.npz"))     # the killed run's finished work
    r = ok(cmd(run, "--workers=1"))
    assert "finished pieces are kept and skipped" in r.stderr and "written by an earlier run" in r.stderr
    assert not glob.glob(str(run / ".mindrecord.work"))         # removed once the dataset is in place
    assert _files(run / "mindrecord") == _files(ref / "mindrecord")   # byte for byte (sha256 of every file)


def test_kill_during_training_then_resume(real_ds, tmp_path):
    ds = real_ds
    cmd = lambda ck: [PY, "train.py", f"--dataset_path={ds}", f"--ckpt_path={ck}", "--batch_size=32",  # noqa: E731
                      "--train_epochs=2", "--save_checkpoint_steps=4", "--keep_checkpoint_max=3", "--resume=True",
                      "--do_eval=False", "--loss_file_name="]
    ok(cmd(tmp_path / "ref"))
    run = tmp_path / "run"
    kill_when(cmd(run), lambda: any(step >= 40 for step, _ in checkpoint.checkpoints_by_step(str(run), "dlrm")))
    r = ok(cmd(run))
    assert "resumed from" in r.stdout
    want, _ = checkpoint.load(checkpoint.resolve(str(tmp_path / "ref"), "dlrm"))
    got, pos = checkpoint.load(checkpoint.resolve(str(run), "dlrm"))
    assert pos["global_step"] == 2 * (1714 // 32)
    assert want.keys() == got.keys()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-6, err_msg=k)


SAVE_BIG = """
import sys
import numpy as np
from src.training import checkpoint
value = float(sys.argv[2])
checkpoint.save(sys.argv[1], [("w", np.full(50_000_000, value, np.float32))], {"global_step": int(value),
                "epoch": 0, "step_in_epoch": int(value)})
"""


def test_kill_during_checkpoint_writing_keeps_the_previous_one(tmp_path):
    path = str(tmp_path / "dlrm-1_5.safetensors")
    save = lambda v: [PY, "-c", SAVE_BIG, path, str(v)]        # noqa: E731  (a 200 MB checkpoint)
    ok(save(1))
    kill_when(save(2), lambda: glob.glob(str(tmp_path / ".tmp*")))       # MindSpore's own temporary file
    arrays, pos = checkpoint.load(path)                         # the previous one, whole (checksum checked)
    assert pos["global_step"] == 1 and arrays["w"][0] == 1 and arrays["w"][-1] == 1
    ok(save(2))
    arrays, pos = checkpoint.load(path)
    assert pos["global_step"] == 2 and np.all(arrays["w"] == 2)
    assert not glob.glob(str(tmp_path / ".*tmp*"))              # the killed write's files are gone


def _predict(mindir, ids, dense):
    import mindspore as ms
    from mindspore import Tensor, nn
    return nn.GraphCell(ms.load(mindir))(Tensor(ids), Tensor(dense)).asnumpy()


def test_kill_during_export_keeps_the_previous_export(real_ds, trained, tmp_path):
    cmd = lambda out: [PY, "export.py", f"--checkpoint_path={trained[1]}", f"--file_name={out}/dlrm"]  # noqa: E731
    ok(cmd(tmp_path / "ref"))
    out = tmp_path / "out"
    ok(cmd(out))
    before = open(out / "dlrm.mindir", "rb").read()
    kill_when(cmd(out), lambda: glob.glob(str(out / ".dlrm.tmp-*")))
    assert open(out / "dlrm.mindir", "rb").read() == before
    ok(cmd(out))
    assert sorted(os.listdir(out)) == ["dlrm.mindir", "dlrm.mindir.json"]   # the killed run's staging folder is gone
    ids, dense, _ = read_split(real_ds, "test")
    np.testing.assert_array_equal(_predict(str(out / "dlrm.mindir"), ids, dense),
                                  _predict(str(tmp_path / "ref" / "dlrm.mindir"), ids, dense))


def test_kill_during_batch_inference_then_rerun(real_ds, trained, tmp_path):
    """run_infer_cpu.sh over the 285 test samples in one-sample batches; killed while the runner writes its results."""
    ok([PY, "export.py", f"--checkpoint_path={trained[1]}", f"--file_name={tmp_path}/dlrm"])
    cmd = ["bash", "scripts/run_infer_cpu.sh", f"{tmp_path}/dlrm.mindir", real_ds, "y", "--test_batch_size=1"]
    ok(cmd, env=env(INFER_DIR=str(tmp_path / "ref")))
    run = tmp_path / "run"
    kill_when(cmd, lambda: len(glob.glob(str(run / ".result_Files.tmp-*" / "*_0.bin"))) > 100,
              env=env(INFER_DIR=str(run)))
    assert not (run / "result_Files").exists()                  # no partial results where postprocess reads
    ok(cmd[:-2] + ["n", "--test_batch_size=1"], env=env(INFER_DIR=str(run)))
    names = sorted(os.listdir(tmp_path / "ref" / "result_Files"))
    assert len(names) == 285 and sorted(os.listdir(run / "result_Files")) == names
    for n in names[::17]:
        assert open(run / "result_Files" / n, "rb").read() == open(tmp_path / "ref" / "result_Files" / n, "rb").read()
    assert open(run / "acc.log").read() == open(tmp_path / "ref" / "acc.log").read()
    assert not glob.glob(str(run / ".result_Files.tmp-*"))


def test_a_write_that_fails_for_space_is_a_clear_error_and_keeps_the_previous_outputs(fixture_file, tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    shutil.copy(fixture_file, d / "train.txt")
    ok([PY, "src/preprocess_data.py", f"--data_path={d}", "--pack_size=100"])
    before = _files(d / "mindrecord")
    for kib in (100, 400):                       # fails in pass 1 (shuffle buckets), in pass 2 (MindRecord)
        r = limited([PY, "src/preprocess_data.py", f"--data_path={d}", "--pack_size=100", "--threshold=2"], kib)
        assert r.returncode == 2, r.stderr[-1500:]
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith(f"preprocess error: cannot write the dataset for {d}/mindrecord:") and \
            "the previous dataset, if any, is kept" in last, last
        assert _files(d / "mindrecord") == before
    ck = tmp_path / "ck"
    ok([PY, "train.py", f"--dataset_path={d}/mindrecord", f"--ckpt_path={ck}", "--batch_size=256",
        "--do_eval=False", "--loss_file_name=", "--ckpt_file_name_prefix=first"])
    first = open(glob.glob(str(ck / "first-*.safetensors"))[0], "rb").read()
    r = limited([PY, "train.py", f"--dataset_path={d}/mindrecord", f"--ckpt_path={ck}", "--batch_size=256",
                  "--do_eval=False", "--loss_file_name="], 1000)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"train error: cannot write checkpoint '{ck}/dlrm-") and "earlier checkpoints are kept" in last
    assert open(glob.glob(str(ck / "first-*.safetensors"))[0], "rb").read() == first
    assert not glob.glob(str(ck / "dlrm-*")) and not glob.glob(str(ck / ".*.tmp-*"))
