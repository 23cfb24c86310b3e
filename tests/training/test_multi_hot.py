"""Multi-hot slots in the model: pooling (sum, mean, empty lists as zero vectors) and the sparse update, exact
against numpy with ids repeated inside a list and across the batch's lists, for SGD and row-wise Adagrad; the
pads (-1) move nothing."""
import numpy as np
import mindspore as ms
import pytest
from mindspore import Tensor, nn

from fixtures.specs import multi_hot_batch, multi_hot_spec
from src.model.dlrm import build_model
from src.training.train_step import make_train_step

# numpy's own layout of multi_hot_spec: the slot of each ids column, each table's first fused row, mean slots
COL_SLOT = [0, 1, 2, 2, 2, 2, 3, 3, 3]
OFFSETS = [0, 7, 12, 18]
MEAN_SLOTS = {3}


def np_pool(table, ids):
    """-> (pooled float64 [B, 4, D], weight of every lookup [B, 9], fused row of every lookup [B, 9] or -1)."""
    b = len(ids)
    pooled, weight, rows = np.zeros((b, 4, table.shape[1])), np.zeros(ids.shape), np.full(ids.shape, -1)
    for i in range(b):
        for c, s in enumerate(COL_SLOT):
            if ids[i, c] < 0:
                continue
            n = sum(ids[i, k] >= 0 for k, t in enumerate(COL_SLOT) if t == s) if s in MEAN_SLOTS else 1
            weight[i, c], rows[i, c] = 1.0 / n, OFFSETS[s] + ids[i, c]
            pooled[i, s] += weight[i, c] * table[rows[i, c]]
    return pooled, weight, rows


def test_pooling_sums_and_averages_lists_and_gives_zero_for_an_empty_one():
    net = build_model(multi_hot_spec(), seed=2)
    ids, _, _ = multi_hot_batch(np.random.default_rng(0), 20)
    ids[3, 2:6] = [1, 1, 1, 2]                                  # one id three times in one list
    got = net.sparse_arch(Tensor(ids)).asnumpy()
    want, _, _ = np_pool(net.table.asnumpy().astype(np.float64), ids)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert (ids[0, 2:6] == -1).all() and not got[0, 2].any()   # an empty list: a zero vector
    np.testing.assert_allclose(got[3, 2], 3 * want[3, 2] / 3, rtol=1e-6)


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_sparse_update_of_pooled_slots_matches_numpy(optimizer):
    """Four steps: the gradient w.r.t. the pooled vectors comes from the same net (MindSpore autodiff of the dense
    part); numpy spreads it over each list's lookups by their weights, sums it per row (repeats inside a list and
    across lists), and applies SGD or row-wise Adagrad (eps 1e-10)."""
    lr = 0.2
    net = build_model(multi_hot_spec(optimizer), seed=5)
    step = make_train_step(net, lr)
    bce = nn.BCEWithLogitsLoss()

    def loss_fn(d, e, y):
        return bce(net.from_embeddings(d, e), y)
    grad_fn = ms.value_and_grad(loss_fn, grad_position=1)
    acc = np.zeros(net.table.shape[0])
    rng = np.random.default_rng(7)
    for _ in range(4):
        ids, dense, label = multi_hot_batch(rng, 32)
        table = net.table.asnumpy().astype(np.float64)
        pooled, weight, rows = np_pool(table, ids)
        _, g = grad_fn(Tensor(dense), Tensor(pooled.astype(np.float32)), Tensor(label))
        g = g.asnumpy().astype(np.float64)                                    # [B, 4, D]
        per_row = np.zeros_like(table)
        used = rows >= 0
        np.add.at(per_row, rows[used], (weight[..., None] * g[:, COL_SLOT])[used])
        touched = np.unique(rows[used])
        if optimizer == "sgd":
            table[touched] -= lr * per_row[touched]
        else:
            acc[touched] += (per_row[touched] ** 2).mean(1)
            table[touched] -= lr * per_row[touched] / (np.sqrt(acc[touched])[:, None] + 1e-10)
        before = net.table.asnumpy().copy()
        step(Tensor(ids), Tensor(dense), Tensor(label))
        after = net.table.asnumpy()
        np.testing.assert_allclose(after, table, rtol=1e-5, atol=1e-6)
        untouched = np.setdiff1d(np.arange(len(table)), touched)
        np.testing.assert_array_equal(after[untouched], before[untouched])   # pads moved nothing
        if optimizer == "adagrad":
            np.testing.assert_allclose(step.row_acc.asnumpy(), acc, rtol=1e-5, atol=1e-9)


def _signal_csv(path, n, seed=0):
    """Clicks whose signal is in a list column: each of 40 tags has its own click-through rate, a sample's rate is
    its tags' mean (1-4 tags); `city` is noise."""
    rng = np.random.default_rng(seed)
    ctr = rng.uniform(0.02, 0.9, 40)
    with open(path, "w") as f:
        f.write("clicked,city,tags\n")
        for _ in range(n):
            tags = rng.choice(40, int(rng.integers(1, 5)), replace=False)
            f.write(f"{int(rng.random() < ctr[tags].mean())},c{int(rng.integers(0, 20))},"
                    f"{'|'.join(f't{t}' for t in tags)}\n")


@pytest.mark.slow
def test_the_list_column_carries_its_signal(tmp_path):
    """On clicks driven by a list column, the model with the column as multi_hot beats the same model without it
    (the list ignored) by a wide margin in test AUC."""
    from fixtures.paths import make_cfg
    from src.data.preprocess import preprocess
    from src.training.evaluation import evaluate
    from src.training.trainer import Trainer
    base = "files: [clicks.csv]\nformat: csv\nheader: true\nlabel: clicked\ncategorical: [city]\n"
    auc = {}
    for name, extra in (("with", "multi_hot:\n  - {name: tags, max_len: 4, pooling: mean}\n"),
                        ("without", "ignore: [tags]\n")):
        d = tmp_path / name
        d.mkdir()
        _signal_csv(d / "clicks.csv", 2800)
        (d / "spec.yaml").write_text(base + extra)
        meta = preprocess(make_cfg(f"--data_path={d}", f"--feature_spec={d / 'spec.yaml'}", "--workers=1",
                                   "--pack_size=16"), progress=False)
        cfg = make_cfg(f"--dataset_path={meta['dataset_path']}", f"--ckpt_path={d / 'ckpt'}", "--batch_size=32",
                       "--train_epochs=3", "--do_eval=False", "--save_checkpoint=False", "--loss_file_name=",
                       "--top_mlp_args=[16,1]", "--data_emb_dim=8", "--interaction_op=cat", "--optimizer=adagrad",
                       "--learning_rate=0.05")
        tr = Trainer(cfg, log=lambda *_: None)
        tr.run()
        auc[name] = evaluate(tr.prob_net, meta["dataset_path"], "test", 256)["auc"]
    print(auc)
    assert auc["with"] > 0.7 and auc["with"] > auc["without"] + 0.1, auc
