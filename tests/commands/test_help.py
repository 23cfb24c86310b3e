"""Every command a user runs answers --help (exit 0, usage text naming its options), and the first-hour mistakes
end in one line: a device target this MindSpore cannot run, a non-finite number."""
import glob
import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from fixtures.commands import last_line, run, run_py
from fixtures.paths import ROOT

ENTRY_POINTS = ["train.py", "eval.py", "export.py", "preprocess.py", "postprocess.py", "predict.py", "serve.py",
                "src/preprocess_data.py"]


def _modules_with_a_main():
    """Every `python -m src.X.Y` the project has (a module with a __main__ block, or a package with __main__.py)."""
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "src", "*", "*.py"))):
        if 'if __name__ == "__main__":' in open(path, encoding="utf-8").read():
            out.append(os.path.relpath(path, ROOT)[:-3].replace(os.sep, "."))
    for path in sorted(glob.glob(os.path.join(ROOT, "src", "**", "__main__.py"), recursive=True)):
        out.append(os.path.relpath(os.path.dirname(path), ROOT).replace(os.sep, "."))   # a package: python -m src.x.y
    return out


def test_every_command_answers_help():
    modules = _modules_with_a_main()
    assert {f"src.tools.{os.path.basename(p)[:-3]}" for p in glob.glob(f"{ROOT}/src/tools/*.py")
            if not p.endswith("__init__.py")} <= set(modules), "every tool is a command"
    commands = [[c, "--help"] for c in ENTRY_POINTS] + [["-m", m, "--help"] for m in modules]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda c: run_py(*c, timeout=120), commands))
    for cmd, r in zip(commands, results):
        assert r.returncode == 0 and r.stdout.startswith("usage:"), f"{cmd}: {r.returncode} {r.stderr[-500:]}"
        assert "Traceback" not in r.stderr
    for cmd, r in zip(commands[:len(ENTRY_POINTS)], results):
        text = " ".join(r.stdout.split())
        assert "--test_batch_size INT" in text and "[int, default 16384]" in text, cmd  # one key, with type and default
        assert "--batch_size auto|INT" in text and '[auto|int, default "auto"]' in text, cmd   # a key with a word
        assert "1 + key % (M-1)" in text                                             # a help text holding '%'


def test_a_device_this_mindspore_cannot_run_is_one_line_naming_what_to_install(real_ds, trained, tmp_path):
    _, ckpt = trained
    commands = [[f"--dataset_path={real_ds}", "--device_target=GPU", "--batch_size=64", f"--ckpt_path={tmp_path}/ck"],
                ["--device_target=Ascend", f"--dataset_path={real_ds}", f"--checkpoint_path={ckpt}"],
                ["--device_target=GPU", f"--checkpoint_path={ckpt}", f"--file_name={tmp_path}/x"]]
    scripts = ["train.py", "eval.py", "export.py"]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda a: run_py(*a[0], *a[1], timeout=120), zip([[s] for s in scripts], commands)))
    for script, r in zip(scripts, results):
        target = "Ascend" if script == "eval.py" else "GPU"
        assert r.returncode == 1 and "Traceback" not in r.stderr, (script, r.stderr[-800:])
        assert "[ERROR]" not in r.stderr and "libcuda" not in r.stderr, r.stderr     # MindSpore's own lines kept out
        line = last_line(r.stderr)
        assert re.fullmatch(rf"{script[:-3]} error: device_target={target} is not available: this MindSpore \S+ "
                            rf"supports CPU only\. Install the MindSpore package built for {target} that matches this "
                            rf"machine's (CUDA|CANN) \(https://www\.mindspore\.cn/install\), or run with "
                            rf"--device_target=CPU", line), line
    assert not os.path.exists(tmp_path / "ck") and not os.path.exists(tmp_path / "x.mindir")
    r = run(["bash", "scripts/run_distribute_train_gpu.sh", "2", real_ds])        # before any rank starts
    assert r.returncode == 2 and last_line(r.stderr).startswith("error: device_target=GPU is not available"), r.stderr
    assert "[ERROR]" not in r.stderr, r.stderr


@pytest.mark.parametrize("script", ["train.py", "export.py"])
def test_a_non_finite_number_is_refused_before_anything_runs(script):
    r = run_py(script, "--learning_rate=nan")
    assert r.returncode == 2 and r.stderr.strip() == \
        "config error: command line: key 'learning_rate': expected a finite number, got nan"
