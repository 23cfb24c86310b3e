"""The fused CPU kernels (src/model/cpu_kernels/): same values and gradients as the stock ops, stock ops in every
export, and a one-line fallback without a C++ compiler."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from fixtures.specs import spec_of
from src.model.cpu_kernels.kernels import library
from src.model.interactions import DotInteractionCell
from src.model_utils.spec import DotInteraction

ROOT = Path(__file__).resolve().parents[2]
SIZES = [50, 3, 2000, 7] + [11] * 22
needs_compiler = pytest.mark.skipif(library("dot_interaction") is None, reason="no C++ compiler")


class _Loss(nn.Cell):
    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def construct(self, x, emb, w):
        return (self.cell(x, emb) * w).sum()


def _value_and_grads(cell, x, emb, w):
    out = cell(Tensor(x), Tensor(emb)).asnumpy()
    gx, gemb, _ = ops.GradOperation(get_all=True)(_Loss(cell))(Tensor(x), Tensor(emb), Tensor(w))
    return out, gx.asnumpy(), gemb.asnumpy()


@needs_compiler
@pytest.mark.parametrize("kw", [{}, {"interaction": DotInteraction(itself=True)}, {"dense_dim": 0, "bottom": ()}],
                         ids=["strict", "diagonal", "no-dense"])
def test_fused_dot_matches_stock(kw):
    spec = spec_of(SIZES, **kw)
    rng = np.random.default_rng(0)
    dx = max(spec.dense_out, 1)
    x, emb = rng.normal(size=(33, dx)).astype(np.float32), rng.normal(size=(33, 26, 16)).astype(np.float32)
    w = rng.normal(size=(33, spec.interaction_width)).astype(np.float32)
    fused, stock = DotInteractionCell(spec, cpu_kernels=True), DotInteractionCell(spec)
    assert fused.fused is not None and stock.fused is None
    got, want = _value_and_grads(fused, x, emb, w), _value_and_grads(stock, x, emb, w)
    for name, a, b in zip(("out", "dx", "demb"), got, want):
        if name == "dx" and not spec.dense_out:
            continue
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5, err_msg=name)
    again = _value_and_grads(fused, x, emb, w)                     # deterministic: bit-identical on a rerun
    for a, b in zip(got, again):
        np.testing.assert_array_equal(a, b)


def test_without_a_compiler_the_stock_ops_run_and_say_so(tmp_path):
    code = ("from fixtures.specs import spec_of\n"
            "from src.model.interactions import DotInteractionCell\n"
            f"c = DotInteractionCell(spec_of({SIZES}), cpu_kernels=True)\n"
            f"c2 = DotInteractionCell(spec_of({SIZES}), cpu_kernels=True)\n"
            "print('fused' if c.fused is not None else 'stock')\n")
    env = {"PATH": "/usr/bin:/bin", "CXX": "no-such-compiler-x", "DLRM_KERNEL_CACHE": str(tmp_path),
           "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("cpu_kernels:")]
    assert lines == ["cpu_kernels: dot_interaction runs on the stock ops: no C++ compiler ('no-such-compiler-x' "
                     "is not on PATH; set CXX)"]
    assert done.stdout.splitlines()[-1] == "stock"
    assert not list(tmp_path.glob("*.so"))


@needs_compiler
@pytest.mark.parametrize("fmt", ["MINDIR", "ONNX"])
def test_exports_hold_stock_ops_only(tmp_path, fmt):
    import onnx
    from src.inference.export import export_network
    from src.model.dlrm import build_model
    from src.model.serving import DLRMProbability
    from src.model_utils.config import Config, parse_cli
    net = build_model(spec_of(SIZES), seed=1, cpu_kernels=True)
    assert net.interaction.fused is not None
    prob = DLRMProbability(net)
    prob.set_train(False)
    ids = Tensor(np.random.default_rng(0).integers(0, 3, (8, 26)).astype(np.int32))
    dense = Tensor(np.random.default_rng(1).random((8, 13)).astype(np.float32))
    fused_out = prob(ids, dense).asnumpy()
    cfg = Config(parse_cli([]), file_name=str(tmp_path / "m"), file_format=fmt, export_batch_size=8,
                 export_table_dtype="float32")
    path = export_network(prob, cfg, log=lambda *_: None)
    assert net.interaction.fused is not None                       # the kernels come back after the export
    data = open(path, "rb").read()
    assert b"Custom" not in data                                   # (a fused net exported as is holds "Custom")
    if fmt == "ONNX":
        kinds = {n.op_type for n in onnx.load(path).graph.node}
        assert "MatMul" in kinds and not any("Custom" in k for k in kinds)
    np.testing.assert_allclose(prob(ids, dense).asnumpy(), fused_out, rtol=1e-6)


def test_cpu_kernels_key_reaches_the_trainer_on_cpu_only():
    from src.model_utils.config import parse_cli
    from src.training.settings import TrainSettings
    fused = lambda *a: TrainSettings.from_config(parse_cli(["--batch_size=128", *a])).fused_kernels  # noqa: E731
    assert fused("--cpu_kernels=fused") and not fused("--cpu_kernels=stock") and not fused()
    assert not fused("--cpu_kernels=fused", "--device_target=GPU")
