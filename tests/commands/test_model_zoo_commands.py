"""The model zoo's own commands as its users type them: the preprocessing command with --dense_dim/--slot_dim (checks
of the data's feature counts), train.py with them, and run_infer_310.sh on a machine without Ascend."""
import json
import os
import re
import shutil

from fixtures.commands import last_line, ok, run, run_py
from fixtures.paths import CRITEO_SAMPLE, PY
from src.inference.model_record import make_record, record_path
from src.training import checkpoint


def test_the_model_zoo_preprocessing_command_as_written(tmp_path):
    """`python src/preprocess_data.py --data_path=./data/ --dense_dim=13 --slot_dim=26 --train_line_count=N` (the model
    zoo's first command, N the file's lines) works; a count that disagrees with the data is one line naming both values,
    before any parsing, and writes nothing."""
    d = tmp_path / "data"
    d.mkdir()
    shutil.copy(CRITEO_SAMPLE, d / "train.txt")
    bad = run_py("src/preprocess_data.py", f"--data_path={d}/", "--dense_dim=12", "--slot_dim=26",
                 "--train_line_count=1999", timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr[-800:]   # preprocessing's input errors
    assert re.search(r"dense_dim=12 but the data in \S+train\.txt has 13: set --dense_dim=13", last_line(bad.stderr))
    assert not os.path.exists(d / "mindrecord") and not os.path.exists(d / ".mindrecord.work")
    ok([PY, "src/preprocess_data.py", f"--data_path={d}/", "--dense_dim=13", "--slot_dim=26",
        "--train_line_count=1999", "--workers=1"])
    meta = json.load(open(d / "mindrecord" / "metadata.json"))
    assert (meta["dense_dim"], meta["slot_dim"]) == (13, 26)


def test_train_checks_slot_dim_against_the_dataset(real_ds):
    r = run_py("train.py", f"--dataset_path={real_ds}", "--slot_dim=25", "--dense_dim=13", timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-800:]
    line = last_line(r.stderr)
    assert "slot_dim=25 but dataset" in line and "has 26: set --slot_dim=26" in line, line
    r = run_py("train.py", f"--dataset_path={real_ds}", "--dense_dim=13", "--slot_dim=26", "--plan_only=True",
               timeout=120)
    assert r.returncode == 0, r.stderr[-800:]                   # agreeing values are only checks


def test_run_infer_310_on_a_machine_without_ascend_says_what_runs_here(trained, real_ds, tmp_path):
    """A .mindir on this machine: with the default DEVICE_TYPE (Ascend310) and with DEVICE_TYPE=CPU the script stops
    in one line (exit 2) naming RUNNER=python and the ONNX export, before preprocessing anything."""
    _, ck = trained
    path = checkpoint.resolve(ck, "dlrm")
    _, position, _, model = checkpoint.read(path)
    mindir = tmp_path / "dlrm.mindir"
    mindir.write_bytes(b"")                                     # never opened: the script stops before
    with open(record_path(str(mindir)), "w") as f:
        json.dump(make_record(str(mindir), "MINDIR", None, "float32", path, position["global_step"], model), f)
    for device in ("", "CPU"):
        extra = {"DEVICE_TYPE": device} if device else {}
        r = run(["bash", "scripts/run_infer_310.sh", str(mindir), real_ds, "y"],
                env=dict(os.environ, INFER_DIR=str(tmp_path / "run"), **extra), timeout=120)
        line = last_line(r.stderr)
        assert r.returncode == 2 and len([x for x in r.stderr.splitlines() if x.strip()]) == 1, r.stderr
        assert "RUNNER=python" in line and "--file_format=ONNX" in line, line
        assert not os.path.exists(tmp_path / "run" / "preprocess_Result")
