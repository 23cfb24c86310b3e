"""Every command of the README's Quick Start and Script Description sections, as printed there, in a copy of the
repository with `.venv` active (its `python` first on PATH), as a new user on this CPU machine would type them.

The placeholders are filled in (DIR: the real Criteo sample's folder; DEVICE_ID 0, DEVICE_TARGET CPU; FILE_OR_GLOB
and OUT.csv: a gzip day file of raw lines and its scores; bracketed optional arguments left out), serve.py's port
8000 becomes a free loopback port, and a wait for /health follows its start. The Quick Start's two set-up commands
are not run here: `run_tests.sh` is this suite, and `run_main.sh` is tests/commands/test_main_job.py's (its four
variants; --cluster). The scoring block finds the main job's outputs where the main job leaves them
(output/main/ckpt, data/synthetic/mindrecord), made from the sample. Commands for a device this machine lacks (GPU,
Ascend) must stop in one line saying so."""
import gzip
import json
import os
import re
import shlex
import subprocess
import time
import urllib.request

import pytest

from fixtures.commands import copy_of_repository, env
from fixtures.distributed import free_port
from fixtures.paths import CRITEO_SAMPLE, RANK_TABLE, ROOT

# placeholder (a regular expression) -> what this test puts there, in this order
FILL = ((r"\s*\[--key=value \.\.\.\]", ""), (r"\s*\[DEVICE_ID\]", ""),
        (r"\s\.\.\.$", " --dataset_path=data/synthetic/mindrecord"), (r"\bDIR/", "data/synthetic/"),
        (r"\bDEVICE_ID\b", "0"), (r"\bDEVICE_TARGET\b", "CPU"), (r"\bCHECKPOINT_PATH\b", "./ckpt"),
        (r"\bFILE_OR_GLOB\b", "'new/day_*.gz'"), (r"\bOUT\.csv\b", "out.csv"))
NOT_HERE = ("run_main.sh", "run_tests.sh")          # see the module docstring
# commands for a device this machine lacks: (a word of the command, what their one line says)
NO_DEVICE = {"run_distribute_train_gpu.sh": "device_target=GPU is not available",
             "run_distribute_train_ascend.sh": "device_target=Ascend is not available",
             "run_infer_310.sh dlrm.mindir": "RUNNER=python"}


def _sections(text: str, first: str, until: str) -> str:
    return text[text.index(f"\n## {first}\n"):text.index(f"\n## {until}\n")]


def readme_commands() -> list:
    """The command lines of the bash blocks of the Script Description section, then of the Quick Start's (whose
    scoring block reads what the main job, or here the commands before, wrote), their comments cut and their
    placeholders filled (FILL)."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    out = []
    for part in (_sections(text, "Script Description", "Model Description"),
                 _sections(text, "Quick Start", "Script Description")):
        for block in re.findall(r"```bash\n(.*?)```", part, re.S):
            for line in block.splitlines():
                line = re.sub(r"\s+#\s.*$", "", line).strip()
                for pattern, value in FILL:
                    line = re.sub(pattern, value, line)
                if line:
                    out.append(line)
    return out


def _prepare(repo: str) -> None:
    """data/synthetic/train.txt: the real sample; new/day_0.gz: its last 200 lines (new data with labels);
    hccl_8p.json: a rank table."""
    os.makedirs(os.path.join(repo, "data", "synthetic"))
    os.symlink(CRITEO_SAMPLE, os.path.join(repo, "data", "synthetic", "train.txt"))
    lines = open(CRITEO_SAMPLE, "rb").read().splitlines(keepends=True)
    os.makedirs(os.path.join(repo, "new"))
    with gzip.open(os.path.join(repo, "new", "day_0.gz"), "wb") as f:
        f.writelines(lines[-200:])
    with open(os.path.join(repo, "hccl_8p.json"), "w") as f:
        json.dump(RANK_TABLE, f)


def _healthy(port: int, timeout: float = 120) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"serve.py on port {port} never answered /health")


def _run(repo: str, line: str, environ: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", line], cwd=repo, capture_output=True, text=True, timeout=600, env=environ)


@pytest.mark.slow                  # about 70 s
def test_the_readme_commands_as_printed(tmp_path):
    if not os.path.isdir(os.path.join(ROOT, ".git")):
        pytest.skip("not a git checkout")
    commands = readme_commands()
    assert any(c.startswith("python train.py") for c in commands) and len(commands) > 15, commands
    repo = copy_of_repository(str(tmp_path / "repo"))
    _prepare(repo)
    environ = env(PATH=f"{os.path.join(repo, '.venv', 'bin')}:{os.environ['PATH']}")
    ran, server, port = [], None, free_port()
    try:
        for line in commands:
            if any(word in line for word in NOT_HERE):
                continue
            if line.startswith("python export.py --checkpoint_path=output/main/ckpt"):   # the main job's outputs
                os.makedirs(os.path.join(repo, "output", "main"), exist_ok=True)
                if not os.path.exists(os.path.join(repo, "output", "main", "ckpt")):
                    os.symlink(os.path.join(repo, "ckpt"), os.path.join(repo, "output", "main", "ckpt"))
            line = line.replace("--port=8000", f"--port={port}").replace("localhost:8000", f"localhost:{port}")
            if line.startswith("python serve.py") and line.endswith("&"):
                server = subprocess.Popen(shlex.split(line[:-1]), cwd=repo, env=environ, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True)
                _healthy(port)
                continue
            if line.startswith("python serve.py"):                  # the Script Description's: start, ask, stop
                server = subprocess.Popen(shlex.split(line), cwd=repo, env=environ, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True)
                _healthy(port)
                line = "kill %1"
            if line == "kill %1":
                server.terminate()
                assert server.wait(timeout=60) == 0, server.stderr.read()[-1500:]
                server = None
                ran.append(line)
                continue
            r = _run(repo, line, environ)
            failing = [what for word, what in NO_DEVICE.items() if word in line]
            if failing:
                last = [x for x in r.stderr.splitlines() if x.strip()][-1:]
                assert r.returncode != 0 and last and failing[0] in last[0], (line, r.stderr[-1500:])
            else:
                assert r.returncode == 0, (line, r.stdout[-1500:], r.stderr[-1500:])
            if line.startswith("curl"):
                assert 0 <= json.loads(r.stdout)["probabilities"][0] <= 1, r.stdout
            if "--file_format=MINDIR" in line:                      # "or ONNX": the C++ line below runs dlrm.onnx
                r = _run(repo, line.replace("MINDIR", "ONNX"), environ)
                assert r.returncode == 0, r.stderr[-1500:]
            ran.append(line)
    finally:
        if server is not None:
            server.kill()
    assert len(ran) >= 18, ran
    assert os.path.isfile(os.path.join(repo, "training.png")) and os.path.isfile(os.path.join(repo, "out.csv"))
