"""Many distributed launches in a row beside a CPU hog: does the launcher tell the truth every time?

    python -m src.tools.launch_stress [--launches 20] [--killed 3] [--ranks 2] [--hog] [--work DIR]

Each clean launch trains one epoch of the real sample (tests/data/samples, preprocessed once into the work folder) on
`--ranks` CPU ranks through scripts/run_distribute_train_cpu.sh and must exit 0; each killed launch has rank 1 killed
with SIGKILL once training is under way and must exit 1 naming rank 1. With --hog, one busy process per core runs for
the whole time (teardown failures came with load). Prints one line per launch (exit code, seconds, the launcher's
teardown warning if any) and a summary; exits 1 when any launch's exit was not the expected one. Nothing is written
outside the work folder (a new temporary one by default, removed at the end).
"""
import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = os.path.join(ROOT, "tests", "data", "samples", "criteo_kaggle_train_head1999.tsv")


def _spin() -> None:
    while True:
        pass


def dataset(work: str) -> str:
    """The real sample preprocessed into WORK/data/mindrecord (once)."""
    d = os.path.join(work, "data")
    if not os.path.isfile(os.path.join(d, "mindrecord", "metadata.json")):
        os.makedirs(d, exist_ok=True)
        shutil.copy(SAMPLE, os.path.join(d, "train.txt"))
        subprocess.run([sys.executable, "src/preprocess_data.py", f"--data_path={d}", "--pack_size=100"], cwd=ROOT,
                       check=True, capture_output=True)
    return os.path.join(d, "mindrecord")


def launch(ds: str, run_dir: str, ranks: int, kill: bool) -> Tuple[int, float, str]:
    """One launch: (exit code, seconds, the launcher's last line of stderr). kill: SIGKILL rank 1 once loss.log exists."""
    env = dict(os.environ, RUN_DIR=run_dir, GLOG_v="3")
    start = time.time()
    proc = subprocess.Popen(["bash", "scripts/run_distribute_train_cpu.sh", str(ranks), ds, "--batch_size=32",
                             "--train_epochs=1" if not kill else "--train_epochs=1000", "--test_batch_size=64",
                             "--log_interval_steps=5"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if kill:
        victim = None
        while victim is None and proc.poll() is None:
            time.sleep(0.5)
            if os.path.exists(os.path.join(run_dir, "loss.log")):
                victim = _rank_pid(proc.pid, "1")
        if victim:
            os.kill(victim, 9)
    out, err = proc.communicate()
    lines = [line for line in err.splitlines() if line.strip()]
    said = next((line for line in lines if line.startswith("warning:")), "")
    if proc.returncode and kill:
        said = next((line for line in lines if "rank 1" in line), lines[-1] if lines else "")
    elif proc.returncode:
        said = lines[-1] if lines else out[-300:]
    return proc.returncode, time.time() - start, said


def _rank_pid(root: int, rank: str) -> Optional[int]:
    """The pid of the train.py process of `rank` among root's descendants (from /proc)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if b"train.py" in cmd and f"RANK_ID={rank}".encode() in environ and b"MS_ROLE=MS_WORKER" in environ:
            return int(pid)
    return None


def main(argv: Optional[List[str]] = None) -> None:
    """Run the launches and print the outcome of each (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--launches", type=int, default=20, help="clean launches, each must exit 0")
    ap.add_argument("--killed", type=int, default=3, help="launches with rank 1 killed, each must exit 1 naming it")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--hog", action="store_true", help="one busy process per core beside the launches")
    ap.add_argument("--work", default=None, help="work folder (default: a new temporary one, removed at the end)")
    args = ap.parse_args(argv)
    work = args.work or tempfile.mkdtemp(prefix="dlrm_launch_stress_")
    hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(os.cpu_count() or 1)] if args.hog else []
    for h in hogs:
        h.start()
    bad = 0
    try:
        ds = dataset(work)
        plan = [False] * args.launches + [True] * args.killed
        for i, kill in enumerate(plan):
            code, secs, said = launch(ds, os.path.join(work, f"run{i}"), args.ranks, kill)
            ok = (code == 1 and "rank 1" in said) if kill else code == 0
            bad += not ok
            print(f"launch {i + 1:2d} ({'rank 1 killed' if kill else 'clean'}): exit {code}, {secs:.1f} s"
                  f"{', ' + said if said else ''}{'' if ok else '  <-- UNEXPECTED'}", flush=True)
            shutil.rmtree(os.path.join(work, f"run{i}"), ignore_errors=True)
    finally:
        for h in hogs:
            h.terminate()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{len(plan) - bad} of {len(plan)} launches ended as expected ({args.launches} clean, {args.killed} with a "
          f"rank killed; {args.ranks} ranks; CPU hog: {'yes' if args.hog else 'no'})")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
