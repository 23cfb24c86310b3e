"""The main job's look at online scoring: start serve.py on a free loopback port, send it a few requests of raw lines,
print the answers and their latency next to predict.py's probabilities for the same lines, stop it (SIGTERM).

    python -m src.tools.serve_demo --model_path=BUNDLE --lines=FILE --predictions=OUT.csv [--log_dir=DIR]

FILE: raw lines in the training layout (the ones predict.py scored into OUT.csv, in order).
"""
import argparse
import json
import os
import sys
import time
import urllib.request
from typing import List, Optional

import numpy as np

from src.tools.load_test import HOST, serving


def post(port: int, lines: List[str]) -> tuple:
    """(probabilities, milliseconds) of one POST /predict {"lines": lines}."""
    body = json.dumps({"lines": lines}).encode()
    start = time.perf_counter()
    req = urllib.request.Request(f"http://{HOST}:{port}/predict", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        answer = json.loads(r.read())
    return answer["probabilities"], (time.perf_counter() - start) * 1000.0


def main(argv: Optional[List[str]] = None) -> None:
    """`python -m src.tools.serve_demo ...` (module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m src.tools.serve_demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model_path", required=True)
    ap.add_argument("--lines", required=True)
    ap.add_argument("--predictions", required=True, help="predict.py's CSV of the same lines")
    ap.add_argument("--log_dir", default="")
    args = ap.parse_args(argv)
    lines = open(args.lines, encoding="utf-8").read().splitlines()[:100]
    import pandas as pd
    want = pd.read_csv(args.predictions, nrows=len(lines))["probability"].to_numpy()
    log_dir = args.log_dir or os.path.join(os.path.dirname(os.path.abspath(args.model_path)), "serve_log")
    with serving(args.model_path, log_dir) as (proc, port):
        print(f"serve.py (pid {proc.pid}) on http://{HOST}:{port}")
        for i in range(3):
            prob, ms = post(port, [lines[i]])
            print(f"  POST /predict 1 line : probability {prob[0]:.6f} (predict.py {want[i]:.6f}) in {ms:.1f} ms")
        prob, ms = post(port, lines)
        worst = float(np.max(np.abs(np.array(prob) - want)))
        print(f"  POST /predict {len(lines)} lines: {len(prob)} probabilities in {ms:.1f} ms, the largest difference "
              f"from predict.py's {worst:.1e}")
    print(f"serve.py stopped (exit code {proc.returncode})")
    sys.exit(0 if proc.returncode == 0 and worst <= 1e-6 else 1)


if __name__ == "__main__":
    main()
