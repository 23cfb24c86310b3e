"""The fused CPU kernels as MindSpore Custom ops (func_type="aot") with their backward, from the libraries
kernels.py builds. Each factory returns None when the library cannot be built (the caller keeps the stock ops)."""
import os
from contextlib import contextmanager
from functools import lru_cache
from typing import Callable, Iterator, Optional

from mindspore import nn, ops

from src.model.cpu_kernels.kernels import library, unavailable_reason


@lru_cache(maxsize=None)
def announce_stock(name: str) -> None:
    """Print, once per process and kernel, that the stock ops run instead of kernel `name` and why."""
    print(f"cpu_kernels: {name} runs on the stock ops: {unavailable_reason(name)}", flush=True)


def dot_interaction_op(width: int, with_x: bool) -> Optional[Callable]:
    """The fused dot interaction (dot_interaction.cc): (x float32 [B, D], emb float32 [B, S, D]) -> float32
    [B, width] = [x, the gram's lower triangle] (without x: emb -> the triangle), `width` = spec.interaction_width;
    differentiable through DotInteractionGrad. None when the library cannot be built (announced once)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # read when the library's OpenMP runtime loads: idle
    lib = library("dot_interaction")                     # threads sleep instead of spinning on MindSpore's cores
    if lib is None:
        announce_stock("dot_interaction")
        return None
    if with_x:
        grad = ops.Custom(f"{lib}:DotInteractionGrad", out_shape=lambda x, e, g: (x, e),
                          out_dtype=lambda x, e, g: (x, e), func_type="aot")

        def bprop(x, emb, out, dout):
            return grad(x, emb, dout)

        return ops.Custom(f"{lib}:DotInteraction", out_shape=lambda x, e: [e[0], width],
                          out_dtype=lambda x, e: e, func_type="aot", bprop=bprop)
    grad = ops.Custom(f"{lib}:DotInteractionGrad", out_shape=lambda e, g: e, out_dtype=lambda e, g: e,
                      func_type="aot")

    def bprop_emb(emb, out, dout):
        return (grad(emb, dout),)

    return ops.Custom(f"{lib}:DotInteraction", out_shape=lambda e: [e[0], width], out_dtype=lambda e: e,
                      func_type="aot", bprop=bprop_emb)


@contextmanager
def stock_ops(net: nn.Cell) -> Iterator[nn.Cell]:
    """Within the block, every cell of `net` that holds a fused kernel (an attribute `fused`) runs the stock ops:
    exports (MINDIR, ONNX, AIR) hold stock ops only. The kernels come back after the block."""
    held = [(cell, cell.fused) for _, cell in net.cells_and_names() if getattr(cell, "fused", None) is not None]
    for cell, _ in held:
        cell.fused = None
    try:
        yield net
    finally:
        for cell, op in held:
            cell.fused = op
