"""What every benchmark suite shares: the repository root, the speed suites' recipe (dot + SGD), the config file
of a device, running one measurement in a child process (its own peak RSS), sampled memory of a process tree, and
the synthetic datasets and day files the suites make once in the work folder.
"""
import json
import os
import shutil
import subprocess
import sys
import time

from src.model_utils.spec import DLRMSpec, criteo_features


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))   # the repository


# The Kaggle architecture with the dot interaction and plain SGD: the recipe the speed suites' figures (train, tables,
# parallel, plan, multi-hot, infer) have always been measured with, whatever the configs' default recipe.
DOT = ("--interaction_op=dot",)


SGD = ("--optimizer=sgd", "--learning_rate=0.15", *DOT, "--warmup_steps=0", "--decay_start_step=0", "--decay_steps=0")


def config_file(device):
    """The config file the suites start from: gpu_config.yaml for GPU, cpu_config.yaml otherwise."""
    return os.path.join(ROOT, f"{'gpu' if device == 'GPU' else 'cpu'}_config.yaml")


def run_child(*args, env=None):
    """Run `python -m src.tools.benchmark _child ...` (extra environment `env`); returns (json result, peak
    RSS in bytes)."""
    proc = subprocess.Popen([sys.executable, "-m", "src.tools.benchmark", "_child", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, env=dict(os.environ, GLOG_v="3", **(env or {})))
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child {args} failed with exit code {proc.returncode}")
    return json.loads(out.decode().strip().splitlines()[-1]), usage.ru_maxrss * 1024


def ensure_synthetic(work, lines):
    d = os.path.join(work, f"synthetic_{lines}")
    if not os.path.isfile(os.path.join(d, "train.txt")):
        from src.data.synthetic import generate
        generate(os.path.join(d, "train.txt"), lines, prob_file=os.path.join(d, "train_prob.npy"))
    return d


def gb(n):
    return f"{n / 2 ** 30:.2f} GB"


# ---------------------------------------------------------------- children (one measurement each)
def spec_of(sizes, *options) -> DLRMSpec:
    """The default config's model (plus train.py `options`) over Criteo-layout tables of `sizes` rows, with SGD."""
    from src.model_utils.config import parse_cli
    return DLRMSpec.from_config(parse_cli(["--optimizer=sgd", *DOT, *options]), criteo_features(sizes))


def typed_arg(v):
    for t in (int, float):
        try:
            return t(v)
        except ValueError:
            pass
    return v


def _tree_memory(root: int):
    """(sum of PSS, largest RSS) in bytes over process `root` and its descendants (Linux /proc)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except OSError:
                pass
    todo, pss, rss = [root], 0, 0
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                fields = {ln.split(":")[0]: int(ln.split()[1]) * 1024 for ln in f if ln.split(":")[0] in ("Rss", "Pss")}
            pss, rss = pss + fields.get("Pss", 0), max(rss, fields.get("Rss", 0))
        except OSError:
            pass
    return pss, rss


def run_sampled(cmd, every=0.25, stdout=None):
    """Run cmd (from the repo root); returns (wall seconds, peak total PSS of its process tree, peak single
    RSS). PSS counts pages shared by the worker processes once. `stdout` (a list) receives the command's output."""
    import tempfile
    t = time.time()
    with tempfile.TemporaryFile("w+") as err, tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err, text=True,
                                env=dict(os.environ, GLOG_v="3"))
        peak_pss = peak_rss = 0
        while proc.poll() is None:
            pss, rss = _tree_memory(proc.pid)
            peak_pss, peak_rss = max(peak_pss, pss), max(peak_rss, rss)
            time.sleep(every)
        wall = time.time() - t
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{cmd} failed ({proc.returncode}): {err.read()[-1500:]}")
        if stdout is not None:
            out.seek(0)
            stdout.append(out.read())
    return wall, peak_pss, peak_rss


def gzip_of(sources, dst):
    """dst (.gz) holding the sources' text one after the other, written whole or not at all."""
    import gzip as gz
    with gz.open(dst + ".tmp", "wb") as out:
        for path in sources:
            with open(path, "rb") as f:
                shutil.copyfileobj(f, out)
    os.replace(dst + ".tmp", dst)


def day_files(work, days, lines, gz=False):
    """`days` synthetic day files of `lines` lines each (made once)."""
    d = os.path.join(work, f"days_{days}x{lines}" + ("_gz" if gz else ""))
    if not os.path.isfile(os.path.join(d, f"day_{days - 1}" + (".gz" if gz else ""))):
        from src.data.synthetic import generate_days
        generate_days(d, days, lines, gzip=gz)
    return d


def preprocess_cmd(data_dir, *extra):
    return [sys.executable, "src/preprocess_data.py", f"--data_path={data_dir}", *extra]


def synthetic_dataset(work, lines):
    """The suites' synthetic dataset of `lines` lines (generated and preprocessed once)."""
    d = ensure_synthetic(work, lines)
    dataset = os.path.join(d, "mindrecord")
    if not os.path.isfile(os.path.join(dataset, "metadata.json")):
        run_child("preprocess", d, str(lines))
    return d, dataset


def run_timed(cmd, env=None):
    """Run a command; returns (seconds, peak RSS bytes, output). A failure raises with its output's tail."""
    t = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd[0]} failed: {out.decode(errors='replace')[-2000:]}")
    return time.time() - t, usage.ru_maxrss * 1024, out.decode(errors="replace")
