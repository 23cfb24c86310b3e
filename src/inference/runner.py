"""Python runner of an exported MINDIR over preprocess.py's batch files: the CPU stand-in for
ascend310_infer/ (same inputs, same result_Files/ and time_Result/ layout).

    python -m src.inference.runner --mindir_path=dlrm.mindir --input_path=preprocess_Result \
        --result_path=result_Files --time_path=time_Result [--device_target=CPU]
"""
import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, List, Optional

import numpy as np

if TYPE_CHECKING:                 # annotations only; mindspore is imported where it runs
    import mindspore

from src.inference.batch_files import (MANIFEST, RESULT_SUFFIX, InferFilesError, list_batches, model_inputs,
                                       read_inputs, write_time)
from src.utils.runtime import DeviceUnavailable, setup_context
from src.utils.staged_dir import OutputError, only_files, staged_dir


def load_graph(mindir_path: str, device_target: str = "CPU") -> "mindspore.nn.GraphCell":
    """An exported MINDIR as a callable GraphCell (ids, dense) -> prob [B, 1] (ids alone without dense features), on
    `device_target`."""
    import mindspore as ms
    from mindspore import nn
    if not os.path.isfile(mindir_path):
        raise InferFilesError(f"MINDIR '{mindir_path}' does not exist")
    setup_context(device_target, None)
    return nn.GraphCell(ms.load(mindir_path))


def run(graph, input_path: str, result_path: str, time_path: str, log=print, load_s: float = 0.0) -> dict:
    """Predict every batch (after one untimed warm-up call on the first); returns {'batches', 'samples',
    'mean_ms', 'seconds'}."""
    from mindspore import Tensor
    with open(os.path.join(input_path, MANIFEST), encoding="utf-8") as f:
        manifest = json.load(f)
    inputs = model_inputs(manifest)
    names = list_batches(os.path.join(input_path, inputs[0][0]))
    latencies, samples = [], 0
    graph(*[Tensor(x) for x in read_inputs(input_path, names[0], inputs)]).asnumpy()   # compiles the graph
    with staged_dir(result_path, only_files(RESULT_SUFFIX), "the inference results") as tmp:
        for name in names:
            arrays = [Tensor(x) for x in read_inputs(input_path, name, inputs)]
            start = time.perf_counter()
            prob = graph(*arrays).asnumpy()
            latencies.append(time.perf_counter() - start)
            np.ascontiguousarray(prob, "<f4").tofile(os.path.join(tmp, name + RESULT_SUFFIX))
            samples += len(prob)
    total = float(np.sum(latencies))
    log(write_time(time_path, [1000.0 * t for t in latencies], samples, load_s).rstrip())
    return {"batches": len(latencies), "samples": samples, "mean_ms": 1000.0 * total / len(latencies),
            "seconds": total}


def main(argv: Optional[List[str]] = None) -> None:
    """`python -m src.inference.runner --mindir_path=... --input_path=...` (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mindir_path", required=True)
    p.add_argument("--input_path", required=True, help="folder written by preprocess.py")
    p.add_argument("--result_path", default="./result_Files")
    p.add_argument("--time_path", default="./time_Result")
    p.add_argument("--device_target", default="CPU", choices=["CPU", "GPU", "Ascend"])
    args = p.parse_args(argv)
    try:
        if not os.path.isfile(os.path.join(args.input_path, MANIFEST)):
            raise InferFilesError(f"'{os.path.join(args.input_path, MANIFEST)}' not found: --input_path must be a "
                                  f"folder written by preprocess.py")
        start = time.perf_counter()
        graph = load_graph(args.mindir_path, args.device_target)
        run(graph, args.input_path, args.result_path, args.time_path, load_s=time.perf_counter() - start)
    except (InferFilesError, OutputError, OSError, DeviceUnavailable) as exc:
        sys.stderr.write(f"infer error: {exc}\n")
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("GLOG_v", "3")
    main()
