import numpy as np
import pytest
from mindspore import Tensor

from fixtures.specs import spec_of
from src.model.dlrm import build_model
from src.model.interactions import DotInteractionCell
from src.model.serving import CompactSparseArch
from src.model_utils.spec import CatInteraction, DotInteraction

SIZES = [50, 3, 2000, 7] + [11] * 22


def _net(sizes=SIZES, seed=7, **kw):
    return build_model(spec_of(sizes, **{"bottom": (512, 256, 64, 16), "top": (512, 256, 1), **kw}), seed)


def test_shapes_through_every_cell():
    net = _net()
    ids = Tensor(np.random.default_rng(0).integers(0, 3, (8, 26)).astype(np.int32))
    dense = Tensor(np.random.default_rng(1).random((8, 13)).astype(np.float32))
    emb = net.sparse_arch(ids)
    assert emb.shape == (8, 26, 16)
    x = net.dense_arch(dense)
    assert x.shape == (8, 16)
    z = net.interaction(x, emb)
    assert z.shape == (8, 367)
    assert net.over_arch(z).shape == (8, 1)
    assert net(ids, dense).shape == (8, 1)
    assert [p.shape for p in net.over_arch.trainable_params()][0] == (512, 367)


def test_interaction_indices():
    inter = DotInteractionCell(spec_of(SIZES))
    idx = inter.flat_index.asnumpy()
    i, j = idx // 27, idx % 27
    assert len(idx) == 351 and (i > j).all() and len(set(idx)) == 351
    with_diag = DotInteractionCell(spec_of(SIZES, interaction=DotInteraction(itself=True))).flat_index.asnumpy()
    assert len(with_diag) == 378 and ((with_diag // 27) == (with_diag % 27)).sum() == 27
    assert spec_of(SIZES, interaction=CatInteraction()).interaction_width == 16 + 26 * 16
    # values: dot products of the right vectors
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 16)).astype(np.float32)
    emb = rng.normal(size=(2, 26, 16)).astype(np.float32)
    out = inter(Tensor(x), Tensor(emb)).asnumpy()
    t = np.concatenate([x[:, None], emb], 1)
    np.testing.assert_allclose(out[:, :16], x)
    np.testing.assert_allclose(out[:, 16 + 0], (t[:, 1] * t[:, 0]).sum(1), rtol=1e-5)
    np.testing.assert_allclose(out[:, 16 + 350], (t[:, 26] * t[:, 25]).sum(1), rtol=1e-5)


def test_init_statistics():
    net = _net([40000, 100] + [10] * 24)
    table = net.sparse_arch.table.asnumpy()
    big = table[:40000]
    bound = 1 / np.sqrt(40000)
    assert np.abs(big).max() <= bound and np.abs(big).max() > 0.99 * bound
    assert abs(big.std() - bound / np.sqrt(3)) < 0.01 * bound        # U(-a, a) has std a/sqrt(3)
    small = table[40000:40100]
    assert np.abs(small).max() <= 0.1 and np.abs(small).max() > 0.09
    w = net.over_arch.trainable_params()[0].asnumpy()                 # [512, 367]
    assert abs(w.std() - np.sqrt(2 / (367 + 512))) < 0.02 * np.sqrt(2 / (367 + 512))
    b = net.over_arch.trainable_params()[1].asnumpy()                 # [512]
    assert abs(b.std() - np.sqrt(1 / 512)) < 0.1 * np.sqrt(1 / 512)
    again = _net([40000, 100] + [10] * 24)
    np.testing.assert_array_equal(again.sparse_arch.table.asnumpy(), table)  # seeded


def test_dot_interaction_needs_matching_widths():
    with pytest.raises(ValueError, match=r"bottom_mlp_args \[64, 8\] ends with 8, data_emb_dim is 16"):
        _net(bottom=[64, 8])
    net = _net(bottom=[64, 8], interaction=CatInteraction())
    rng = np.random.default_rng(5)
    ids = Tensor(rng.integers(0, 3, (2, 26)).astype(np.int32))
    dense = Tensor(rng.random((2, 13)).astype(np.float32))
    out = net(ids, dense).asnumpy()
    assert net.over_arch.trainable_params()[0].shape == (512, 8 + 26 * 16)   # cat: 8 + 26 * 16 inputs
    x, emb = net.dense_arch(dense).asnumpy(), net.sparse_arch(ids).asnumpy()      # [2, 8], [2, 26, 16]
    z = np.concatenate([x, emb.reshape(2, -1)], axis=1)                          # the concatenation, by hand
    np.testing.assert_allclose(out, net.over_arch(Tensor(z)).asnumpy(), rtol=1e-5, atol=1e-6)


def _quantised(table):
    arch = CompactSparseArch(table, [0], "int8")
    q = arch.table.asnumpy().astype(np.float32)
    scale, offset = arch.scale.asnumpy(), arch.offset.asnumpy()
    return q, scale, offset, q * scale + offset


def test_int8_rows_are_within_half_a_step_of_the_float_rows(monkeypatch):
    """Row-wise int8: every value dequantises to within scale/2 of the float32 value (round to nearest), the row's
    minimum and maximum are hit exactly, a constant row comes back exact, and a table of several chunks (the
    quantiser works 2^20 rows at a time; here 1,000) is quantised as one."""
    monkeypatch.setattr(CompactSparseArch, "CHUNK", 1000)
    rng = np.random.default_rng(3)
    table = rng.normal(0, 0.05, (2500, 16)).astype(np.float32)
    table[7] = 0.25                                                 # a constant row
    table[1999] = np.linspace(-1, 3, 16)                            # a row across a chunk boundary's neighbour
    q, scale, offset, back = _quantised(table)
    assert q.min() >= -128 and q.max() <= 127
    err = np.abs(back - table)
    assert np.all(err <= scale / 2 * (1 + 1e-5) + 1e-7), float((err - scale / 2).max())
    rows = np.arange(len(table))
    np.testing.assert_allclose(back[rows, table.argmin(1)], table.min(1), atol=1e-6)
    np.testing.assert_allclose(back[rows, table.argmax(1)], table.max(1), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(back[7], table[7])
    np.testing.assert_allclose(scale[1999, 0], 4 / 255, rtol=1e-6)
    # the same table quantised in one chunk gives the same numbers: chunks do not change the result
    monkeypatch.setattr(CompactSparseArch, "CHUNK", 1 << 20)
    q1, scale1, _, back1 = _quantised(table)
    np.testing.assert_array_equal(q1, q)
    np.testing.assert_array_equal(back1, back)
