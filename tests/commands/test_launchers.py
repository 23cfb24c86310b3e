"""The model-zoo scripts end to end: train -> eval -> export through the launchers and entry points (DCN-V2, Adam,
a schedule), argument errors, the Ascend rank-table launcher, and the Python a launcher picks."""
import json
import os
import re
import shutil
import stat

import pytest

from fixtures.commands import env, run
from fixtures.paths import PY, RANK_TABLE, ROOT
from src.training import checkpoint

DCN_ADAM = ["--interaction_op=dcn", "--dcn_low_rank_dim=32", "--bottom_mlp_args=[64,32]", "--optimizer=adam",
            "--learning_rate=0.001", "--warmup_steps=5"]


def _sh(*args, **kw):
    return run(["bash", *args], timeout=300, **kw)


@pytest.mark.slow
def test_train_eval_export_through_the_scripts(real_ds, tmp_path):
    """run_standalone_train_cpu.sh (train.py) writes the model-zoo logs and keeps the newest checkpoints;
    run_eval.sh (eval.py) reproduces training's final metrics from the checkpoint alone; an eval asking for another
    architecture is refused naming the key and both values; export.py rebuilds the DCN network from the checkpoint."""
    r = _sh("scripts/run_standalone_train_cpu.sh", real_ds, "--batch_size=128", "--test_batch_size=100",
            "--log_interval_steps=5", "--save_checkpoint_steps=7", "--keep_checkpoint_max=2", *DCN_ADAM,
            env=env(RUN_DIR=str(tmp_path / "train")))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stdout.startswith("training on CPU:0, logs in") and "\nmodel: 26 tables, " in r.stdout
    assert "embedding rows x 16" in r.stdout and "expected peak memory" in r.stdout
    ck = tmp_path / "train" / "ckpt"
    assert [os.path.basename(c) for c in checkpoint.list_checkpoints(str(ck), "dlrm")] == \
        ["dlrm-1_7.safetensors", "dlrm-1_13.safetensors"]                            # 1714 // 128 = 13 steps
    loss_lines = (tmp_path / "train" / "loss.log").read_text().splitlines()
    assert len(loss_lines) == 3 and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d epoch: 1, step: 5, loss is [0-9.]+, "
                                                 r"samples/s: [0-9.]+", loss_lines[0])
    train_eval = (tmp_path / "train" / "eval.log").read_text().splitlines()[-1]
    assert "samples: 285," in train_eval and "final eval: accuracy" in (tmp_path / "train" / "train.log").read_text()
    _, _, _, model = checkpoint.read(checkpoint.resolve(str(ck), "dlrm"))
    spec = model["spec"]
    assert (spec["interaction"]["name"], spec["interaction"]["rank"], spec["optimizer"]) == ("dcn", 32, "adam")
    r = _sh("scripts/run_eval.sh", "0", "CPU", real_ds, str(ck), "--test_batch_size=100",
            env=env(RUN_DIR=str(tmp_path / "eval")))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    ev = (tmp_path / "eval" / "eval.log").read_text().splitlines()[-1]
    assert "dlrm-1_13.safetensors" in ev and "samples: 285," in ev

    def pick(line, k):
        return re.search(rf"{k}: ([0-9.]+)", line).group(1)
    assert [pick(ev, k) for k in ("accuracy", "auc", "logloss")] == \
        [pick(train_eval, k) for k in ("accuracy", "auc", "logloss")]
    r = run([PY, "eval.py", f"--dataset_path={real_ds}", f"--checkpoint_path={ck}", "--top_mlp_args=[256,1]"])
    assert r.returncode == 1 and "holds a network with top_mlp_args=[512, 256, 1] but the command line asks for " \
                                  "top_mlp_args=[256, 1]" in r.stderr
    r = run([PY, "export.py", f"--checkpoint_path={ck}", f"--file_name={tmp_path}/dcn"])
    assert r.returncode == 0 and os.path.isfile(tmp_path / "dcn.mindir"), r.stderr[-2000:]


def test_launcher_argument_errors(real_ds):
    r = _sh("scripts/run_eval_gpu.sh", "0", "CPU", real_ds)
    assert r.returncode == 2 and "usage:" in r.stderr
    r = _sh("scripts/run_standalone_train_gpu.sh", "x", "GPU", real_ds)
    assert r.returncode == 2 and "DEVICE_ID must be a non-negative integer" in r.stderr
    r = _sh("scripts/run_standalone_train_ascend.sh", "0", "Ascend", "/nonexistent")
    assert r.returncode == 2 and "has no metadata.json" in r.stderr
    r = _sh("scripts/run_distribute_train_cpu.sh", "0", real_ds)
    assert r.returncode == 2 and "the number of ranks must be a positive integer, got '0'" in r.stderr


def test_ascend_launcher_starts_this_servers_devices_as_their_global_ranks(tmp_path):
    """With a 2-server rank table and SERVER_ID of the second server, the launcher starts ranks 2 and 3 on devices 0 and
    1 (RANK_SIZE 4). This MindSpore has no Ascend: the launcher's own device check refuses first (exit 2, one line);
    past a stubbed check, both ranks fail in set_device and the launcher names them (exit 1)."""
    table = tmp_path / "rank_table_2x2.json"
    table.write_text(json.dumps(RANK_TABLE))
    e = env(SERVER_ID="10.0.0.2", RUN_DIR=str(tmp_path / "run"))
    r = _sh("scripts/run_distribute_train_ascend.sh", "2", str(tmp_path / "nowhere"), str(table), env=e)
    assert r.returncode == 2 and "has no metadata.json" in r.stderr           # checked before anything starts
    fake = tmp_path / "ds"                                                    # any folder with a metadata.json
    fake.mkdir()
    (fake / "metadata.json").write_text("{}")
    r = _sh("scripts/run_distribute_train_ascend.sh", "2", str(fake), str(table), env=e)
    assert r.returncode == 2 and "device_target=Ascend is not available" in r.stderr, r.stdout + r.stderr
    assert not (tmp_path / "run").exists() or not os.listdir(tmp_path / "run" / "ranks")
    stub = tmp_path / "python"                                                 # passes the device check only
    stub.write_text(f"#!/bin/sh\ncase \"$*\" in *--check_device=Ascend*) exit 0;; esac\nexec {PY} \"$@\"\n")
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    r = _sh("scripts/run_distribute_train_ascend.sh", "2", str(fake), str(table), env=dict(e, PYTHON=str(stub)))
    assert "started ranks 2 (device 0), 3 (device 1) of 4" in r.stdout and r.returncode == 1, r.stdout + r.stderr
    assert "distributed training FAILED" in r.stderr and "---- rank 2" in r.stderr and "---- rank 3" in r.stderr
    assert sorted(os.listdir(tmp_path / "run")) == ["log2", "log3", "ranks"]


def test_launchers_run_the_users_python_and_install_nothing(real_ds, trained, tmp_path):
    """A launcher runs the python on PATH that has MindSpore (a cluster's build matches its CUDA/CANN): here a
    wrapper that records its calls; no .venv is made or changed. With no MindSpore anywhere it says what to do."""
    _, ckpt = trained
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "python"
    wrapper.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/calls.txt\nexec {PY} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    venv_stamp = os.path.join(ROOT, ".venv", ".requirements.sha")
    before = os.path.getmtime(venv_stamp) if os.path.exists(venv_stamp) else None
    e = env(PATH=f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin", RUN_DIR=str(tmp_path / "eval"))
    r = _sh("scripts/run_eval.sh", "0", "CPU", real_ds, ckpt, "--test_batch_size=100", env=e)
    assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
    assert "eval.py" in (tmp_path / "calls.txt").read_text() and "setup:" not in r.stderr
    assert (os.path.getmtime(venv_stamp) if os.path.exists(venv_stamp) else None) == before
    # no MindSpore on PATH and no .venv beside the scripts: one line saying what to install
    lone = tmp_path / "lone" / "scripts"
    shutil.copytree(os.path.join(ROOT, "scripts"), lone)
    r = run(["bash", "-c", f"source {lone}/find_python.sh"], env=env(PATH="/usr/bin:/bin", PYTHON=""))
    assert r.returncode == 2 and "no Python with MindSpore found" in r.stderr and "pip install mindspore" in r.stderr
