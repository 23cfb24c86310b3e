"""The model runtimes of a bundle: onnxruntime on its dynamic-batch ONNX graph (the default: about twice MindSpore's
rate and no MindSpore start-up; docs/serving.md has the figures), or MindSpore on its MINDIR (probabilities equal to
eval.py's; the only one for a model over ONNX's 2 GB). Both take the bundle's inputs and give click
probabilities:

    model = open_model(model_file, runtime, threads)
    prob = model.predict(ids, dense)      # ids int32 [n, L], dense float32 [n, Dn] (ignored without dense features)
                                          # -> float32 [n]
"""
import os
from typing import Optional, Union

import numpy as np

RUNTIMES = ("onnxruntime", "mindspore")
ONNX_FILE, MINDIR_STEM = "model.onnx", "model"


def mindir_file(folder: str) -> str:
    """The MINDIR a bundle folder holds: model.mindir, or model_graph.mindir beside model_variables/ (a model over
    MindSpore's 1 GB budget)."""
    for name in (MINDIR_STEM + ".mindir", MINDIR_STEM + "_graph.mindir"):
        if os.path.isfile(os.path.join(folder, name)):
            return name
    raise FileNotFoundError(f"no {MINDIR_STEM}.mindir in '{folder}'")


class OnnxModel:
    """onnxruntime on the bundle's ONNX graph; `threads` intra-op threads (0: onnxruntime's choice)."""

    def __init__(self, path: str, threads: int = 0):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # onnxruntime's idle threads spin by default, taking CPU from the threads that parse beside them: without it
        # predict.py ran at 94.7k lines/s against 83.1k, serve.py's levels within noise or better (docs/serving.md)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]

    def predict(self, ids: np.ndarray, dense: Optional[np.ndarray]) -> np.ndarray:
        """ids int32 [n, L], dense float32 [n, Dn] -> probabilities float32 [n]."""
        feed = {self.names[0]: ids}
        if len(self.names) > 1:
            feed[self.names[1]] = dense
        return self.session.run(None, feed)[0].reshape(-1)


class MindSporeModel:
    """MindSpore (GRAPH_MODE, CPU) on the bundle's MINDIR (dynamic batch)."""

    def __init__(self, path: str, threads: int = 0):
        import mindspore as ms
        from mindspore import nn
        from src.utils.runtime import setup_context
        setup_context("CPU", None)
        self.graph = nn.GraphCell(ms.load(path))

    def predict(self, ids: np.ndarray, dense: Optional[np.ndarray]) -> np.ndarray:
        """ids int32 [n, L], dense float32 [n, Dn] (Dn = 0: the graph takes ids alone) -> probabilities float32 [n]."""
        from mindspore import Tensor
        args = [Tensor(ids)] + ([Tensor(dense)] if dense is not None and dense.shape[1] else [])
        return self.graph(*args).asnumpy().reshape(-1)


def open_model(path: str, runtime: str, threads: int = 0) -> Union[OnnxModel, MindSporeModel]:
    """The model file `path` on `runtime` (RUNTIMES)."""
    if runtime == "onnxruntime":
        return OnnxModel(path, threads)
    if runtime == "mindspore":
        return MindSporeModel(path, threads)
    raise ValueError(f"runtime {runtime!r} is not one of {list(RUNTIMES)}")
