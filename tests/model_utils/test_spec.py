"""DLRMSpec: its counts equal the built network's, it survives JSON, and it answers the config keys it came from."""
import numpy as np
import pytest
from mindspore import Tensor

from fixtures.paths import make_cfg
from fixtures.specs import spec_of
from src.model.dlrm import build_model
from src.model_utils.spec import (CatInteraction, DcnInteraction, DLRMSpec, DotInteraction, Feature, criteo_features)
from src.training.train_step import make_train_step

SIZES = (40, 7, 300, 5)
CASES = {
    "dot": dict(),
    "dot itself": dict(interaction=DotInteraction(itself=True)),
    "cat": dict(interaction=CatInteraction(), bottom=(24, 8)),
    "dcn full rank": dict(interaction=DcnInteraction(layers=2, rank=0)),
    "dcn rank 3": dict(interaction=DcnInteraction(layers=3, rank=3)),
    "no dense, dot": dict(dense_dim=0, bottom=()),
    "no dense, dcn": dict(dense_dim=0, bottom=(), interaction=DcnInteraction(layers=1, rank=2)),
}


def _count(params) -> int:
    return int(sum(np.prod(p.shape) for p in params))


@pytest.mark.parametrize("case", CASES)
def test_spec_counts_equal_the_built_network(case):
    """Each case with one optimizer in turn (every optimizer meets dense and no-dense models)."""
    optimizer = ("sgd", "adagrad", "adam")[list(CASES).index(case) % 3]
    spec = spec_of(SIZES, optimizer=optimizer, **CASES[case])
    net = build_model(spec, seed=1)
    assert _count(net.mlp_params()) == spec.mlp_params
    assert tuple(net.table.shape) == (spec.total_rows, spec.emb_dim) and _count([net.table]) == spec.table_params
    assert net.over_arch.trainable_params()[0].shape[1] == spec.interaction_width
    step = make_train_step(net, 0.1)
    assert sum(p.nbytes for p in step.optimizer_state()) == spec.state_bytes()
    b = 5
    ids = np.stack([np.arange(b) % n for n in SIZES], 1).astype(np.int32)
    dense = np.ones((b, spec.dense_dim), np.float32)
    assert net(Tensor(ids), Tensor(dense)).shape == (b, 1)
    loss = step(Tensor(ids), Tensor(dense), Tensor(np.ones((b, 1), np.float32)))
    assert np.isfinite(float(loss.asnumpy()))


def test_kaggle_numbers():
    """The figures the docs quote (README, docs/model.md)."""
    spec = DLRMSpec.from_config(make_cfg(), criteo_features([1000] * 26))
    assert spec.interaction_width == 367 and spec.mlp_params == 475_985
    assert spec.lookups == 26 and spec.dense_dim == 13 and spec.offsets[:3] == (0, 1000, 2000)


def test_json_round_trip_and_config_values():
    for kw in CASES.values():
        spec = spec_of(SIZES, **kw)
        assert DLRMSpec.from_json(spec.to_json()) == spec
        back = DLRMSpec.from_json(__import__("json").loads(spec.dumps()))
        assert back == spec and hash(back) == hash(spec)
    cfg = make_cfg("--interaction_op=dcn", "--dcn_num_layers=2", "--dcn_low_rank_dim=4", "--optimizer=adam")
    spec = DLRMSpec.from_config(cfg, criteo_features(SIZES))
    assert spec.config_values() and all(cfg[k] == v for k, v in spec.config_values().items())


def test_bad_specs_name_what_is_wrong():
    with pytest.raises(ValueError, match="at least one categorical"):
        DLRMSpec(features=(Feature("x", "dense"),), emb_dim=4, bottom=(4,), top=(1,))
    with pytest.raises(ValueError, match="unique"):
        DLRMSpec(features=(Feature("a", "categorical", rows=3), Feature("a", "categorical", rows=3)), emb_dim=4,
                 bottom=(), top=(1,))
    with pytest.raises(ValueError, match=r"top_mlp_args must end with 1 \(the click logit\), got \[8, 2\]"):
        spec_of(SIZES, top=(8, 2))
    with pytest.raises(ValueError, match="kind 'sparse'"):
        Feature("a", "sparse", rows=3)
    with pytest.raises(ValueError, match="max_len 3"):
        Feature("a", "categorical", rows=3, max_len=3)


def test_multi_hot_layout_and_refusals():
    """The ids columns of multi-hot slots (their slot, their table's first row), pooling in the built network, the
    JSON round trip; a dot interaction without a pair is refused naming the fix."""
    from fixtures.specs import multi_hot_spec
    spec = multi_hot_spec(interaction=DcnInteraction(layers=1, rank=2))
    assert (spec.slots, spec.lookups, spec.pooled) == (4, 9, True)
    assert spec.lookup_slots == (0, 1, 2, 2, 2, 2, 3, 3, 3)
    assert spec.lookup_offsets == (0, 7, 12, 12, 12, 12, 18, 18, 18) and spec.mean_pooled_slots == (3,)
    assert spec.interaction_width == 8 + 4 * 8 and DLRMSpec.from_json(spec.to_json()) == spec
    net = build_model(spec, seed=1)
    assert _count(net.mlp_params()) == spec.mlp_params and not spec_of(SIZES).pooled
    with pytest.raises(ValueError, match=r"one vector has no pairwise dot product\): use interaction_op=cat"):
        DLRMSpec(features=(Feature("C1", "categorical", rows=4),), emb_dim=4, bottom=(), top=(4, 1))
