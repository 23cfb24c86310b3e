"""DCN-V2 cross layers against a float64 numpy reference: forward and every gradient."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor

from src.model.interactions import CrossNet


def _np_cross(x0, layers):
    """numpy float64 DCN-V2: x_{l+1} = x0 * (x_l V U + b) (low rank) or x0 * (x_l W + b) (full) + x_l."""
    x = x0
    for p in layers:
        t = x @ p["v"] @ p["u"] if "v" in p else x @ p["w"]
        x = x0 * (t + p["b"]) + x
    return x


def _layer_arrays(net):
    return [{k.rsplit(".", 1)[-1]: v.asnumpy().astype(np.float64) for k, v in
             ((p.name, p) for p in layer.trainable_params())} for layer in net.layers]


@pytest.mark.parametrize("rank", [0, 3])
def test_cross_layers_match_numpy_forward_and_gradient(rank):
    dim, n_layers = 6, 2
    net = CrossNet(dim, n_layers, rank, seed=5)
    layers = _layer_arrays(net)
    for p in layers:                           # the reference init: zero bias, Glorot-normal matrices
        assert np.all(p["b"] == 0)
        p["b"] = np.random.default_rng(1).normal(0, 0.1, dim)
    for layer, p in zip(net.layers, layers):
        layer.b.set_data(Tensor(p["b"].astype(np.float32)))
    x0 = np.random.default_rng(2).normal(0, 1, (4, dim))
    r = np.random.default_rng(3).normal(0, 1, (4, dim))
    got = net(Tensor(x0.astype(np.float32))).asnumpy()
    np.testing.assert_allclose(got, _np_cross(x0, layers), rtol=1e-5, atol=1e-5)
    # gradients of sum(out * r) w.r.t. x0 and every parameter, against central differences in float64
    params = ms.ParameterTuple(net.trainable_params())
    weight = Tensor(r.astype(np.float32))

    def objective(x):
        return (net(x) * weight).sum()
    g_x, g_p = ms.grad(objective, grad_position=0, weights=params)(Tensor(x0.astype(np.float32)))

    def f(x, ls):
        return float((_np_cross(x, ls) * r).sum())

    def numeric(get, shape):
        out = np.zeros(shape)
        for i in np.ndindex(shape):
            plus, minus = get(i, 1e-6), get(i, -1e-6)
            out[i] = (plus - minus) / 2e-6
        return out

    def bump_x(i, e):
        x = x0.copy()
        x[i] += e
        return f(x, layers)
    np.testing.assert_allclose(g_x.asnumpy(), numeric(bump_x, x0.shape), rtol=1e-3, atol=1e-4)
    for p, g in zip(params, g_p):
        li, key = int(p.name.split(".")[-2]), p.name.rsplit(".", 1)[-1]

        def bump(i, e, li=li, key=key):
            ls = [dict(q) for q in layers]
            ls[li][key] = ls[li][key].copy()
            ls[li][key][i] += e
            return f(x0, ls)
        np.testing.assert_allclose(g.asnumpy(), numeric(bump, tuple(p.shape)), rtol=1e-3, atol=1e-4, err_msg=p.name)
