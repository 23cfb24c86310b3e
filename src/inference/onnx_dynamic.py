"""An ONNX export with a dynamic batch dimension, for onnxruntime (the bundle's runtime: predict.py and serve.py).

MindSpore 2.10 exports ONNX only with a fixed batch ("Export ONNX format model not support dynamic shape mode"). The
network is exported at batch EXPORT_BATCH, a prime no layer width or table offset shares, so that every constant of
the graph that depends on the batch is a nonzero multiple of it; `make_batch_dynamic` then names the batch dimension
of the inputs and output `batch` and rewrites each such constant, which MindSpore's exporter emits only as the shape
of a Reshape: the one batch-dependent entry becomes -1 (or 0, "copy the input's dimension", at position 0 when the
shape already holds a -1). Any other use of such a constant, or a shape it cannot rewrite, raises DynamicBatchError.
`export_dynamic_onnx` checks the result on real samples of the dataset, in batches of 1, 3 and 17 rows and all of
them at once, against the MindSpore network (within 1e-6 in probability), so a graph this rewrite got wrong, or whose
arithmetic strays further than that from MindSpore's, never reaches a bundle (the bundle then holds a MINDIR).
"""
import os
from typing import TYPE_CHECKING, Callable, List, Sequence

import numpy as np

from src.model_utils.spec import DLRMSpec

if TYPE_CHECKING:                 # annotations only: these load where they run
    import mindspore
    import onnx
    import onnxruntime

EXPORT_BATCH = 1021
CHECK_BATCHES = (1, 3, 17)                  # rows of the first batches checked (then all rows at once)
TOLERANCE = 1e-6


class DynamicBatchError(ValueError):
    """The ONNX graph could not be given a dynamic batch (the message says why)."""


def _batch_entries(values: np.ndarray) -> List[int]:
    flat = values.reshape(-1).astype(np.int64)
    return [i for i, v in enumerate(flat) if v != 0 and v % EXPORT_BATCH == 0]


def _rewrite_shape(values: np.ndarray) -> np.ndarray:
    """A Reshape's shape with its batch-dependent entry made -1 (or 0 at position 0 beside an existing -1)."""
    found = _batch_entries(values)
    out = values.reshape(-1).copy()
    if len(found) != 1:
        raise DynamicBatchError(f"a Reshape to {out.tolist()} has {len(found)} batch-dependent entries")
    i = found[0]
    if -1 not in out:
        out[i] = -1
    elif i == 0 and out[0] == EXPORT_BATCH:
        out[0] = 0
    else:
        raise DynamicBatchError(f"a Reshape to {out.tolist()} cannot take a dynamic batch")
    return out.reshape(values.shape)


def make_batch_dynamic(model: "onnx.ModelProto") -> None:
    """Rewrite an onnx.ModelProto exported at batch EXPORT_BATCH in place so that any batch runs (module docstring)."""
    from onnx import numpy_helper
    consts = {}                                                  # output name -> (its holder, the array)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    consts[node.output[0]] = (attr.t, numpy_helper.to_array(attr.t))
    for init in model.graph.initializer:
        consts[init.name] = (init, numpy_helper.to_array(init))
    for node in model.graph.node:
        for pos, name in enumerate(node.input):
            if name not in consts or consts[name][1].dtype.kind not in "iu" or not _batch_entries(consts[name][1]):
                continue
            if node.op_type != "Reshape" or pos != 1:
                raise DynamicBatchError(f"the batch size is a constant input of a {node.op_type} node")
            holder, values = consts[name]
            holder.CopyFrom(numpy_helper.from_array(_rewrite_shape(values), holder.name))
    for value in list(model.graph.input) + list(model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if dim.dim_value != EXPORT_BATCH:
            raise DynamicBatchError(f"'{value.name}' does not start with the batch dimension")
        dim.ClearField("dim_value")
        dim.dim_param = "batch"
    del model.graph.value_info[:]                                # intermediate shapes name the old batch


def sample_inputs(spec: DLRMSpec, batch: int, seed: int = 0) -> List[np.ndarray]:
    """Inputs for checking an export of `spec`: ids int32 [batch, L] inside each slot's table (a multi_hot column -1
    in about a third of its places) and, with dense features, dense float32 [batch, Dn] as log1p values."""
    rng = np.random.default_rng(seed)
    cols = [rng.integers(0, spec.sparse[s].rows, batch) for s in spec.lookup_slots]
    ids = np.stack(cols, 1).astype(np.int32)
    pooled = np.array([spec.sparse[s].kind == "multi_hot" for s in spec.lookup_slots])
    ids[:, pooled] = np.where(rng.random((batch, int(pooled.sum()))) < 0.35, -1, ids[:, pooled])
    inputs = [ids]
    if spec.dense_dim:
        inputs.append(rng.random((batch, spec.dense_dim)).astype(np.float32) * 5)
    return inputs


def check_against(session: "onnxruntime.InferenceSession", reference: Callable[[Sequence[np.ndarray]], np.ndarray],
                  rows: Sequence[np.ndarray]) -> float:
    """The largest |onnxruntime - reference| over `rows` (the model's inputs: ids [n, L] and, with dense features,
    dense [n, Dn]; real samples) cut into batches of CHECK_BATCHES rows and one of all of them; DynamicBatchError
    above TOLERANCE."""
    worst, at = 0.0, 0
    names = [i.name for i in session.get_inputs()]
    cuts = [(at, at := at + b) for b in CHECK_BATCHES] + [(0, len(rows[0]))]
    for lo, hi in cuts:
        inputs = [x[lo:hi] for x in rows[:len(names)]]
        if not len(inputs[0]):
            continue
        got = session.run(None, dict(zip(names, inputs)))[0].reshape(-1)
        worst = max(worst, float(np.max(np.abs(got - np.asarray(reference(inputs)).reshape(-1)))))
    if not worst <= TOLERANCE:
        raise DynamicBatchError(f"the rewritten graph differs from the MindSpore network by {worst:.3g} "
                                f"(tolerance {TOLERANCE:g})")
    return worst


def export_dynamic_onnx(export_net: "mindspore.nn.Cell", spec: DLRMSpec, path: str, reference: Callable[[Sequence[np.ndarray]], np.ndarray],
                        rows: Sequence[np.ndarray]) -> float:
    """Export `export_net` (the probability head, ids-only without dense features) to `path` as ONNX with a dynamic
    batch, checked on `rows` (real samples: check_against) against `reference(inputs) -> prob` (the MindSpore
    network); returns the largest difference seen. DynamicBatchError when the graph cannot be made dynamic or the
    check fails (nothing is left at `path` then)."""
    import mindspore as ms
    import onnx
    import onnxruntime as ort
    from mindspore import Tensor
    from src.model.cpu_kernels.ops import stock_ops
    fixed = [Tensor(x) for x in sample_inputs(spec, EXPORT_BATCH)]
    stem = path[:-len(".onnx")] if path.endswith(".onnx") else path
    with stock_ops(export_net):
        ms.export(export_net, *fixed, file_name=stem, file_format="ONNX")
    try:
        model = onnx.load(stem + ".onnx")
        make_batch_dynamic(model)
        onnx.save(model, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        return check_against(ort.InferenceSession(path, options), reference, rows)
    except Exception:
        if os.path.exists(path):
            os.remove(path)
        raise
