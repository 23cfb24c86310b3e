"""Reading the packed splits: the model-zoo dataset, exact shards, and resuming an epoch in any layout."""

import numpy as np
import pytest

from src.data.reader import PackedBatches, create_dataset


def test_create_dataset_shapes_and_eval_keeps_every_sample(real_ds):
    data = create_dataset(real_ds, "test", batch_size=100)
    batches = list(data.create_tuple_iterator(output_numpy=True, num_epochs=1))
    assert [len(b[2]) for b in batches] == [100, 100, 85]
    ids, dense, label = batches[0]
    assert ids.dtype == np.int32 and ids.shape == (100, 26)
    assert dense.dtype == np.float32 and dense.shape == (100, 13)
    assert label.dtype == np.float32 and label.shape == (100, 1)
    train = list(create_dataset(real_ds, "train", batch_size=128).create_tuple_iterator(output_numpy=True, num_epochs=1))
    assert len(train) == 1714 // 128 and all(len(b[2]) == 128 for b in train)


def test_shards_split_the_rows_disjointly(real_ds):
    whole = np.concatenate([b[0] for b in PackedBatches(real_ds, "train", 1000)])
    for n in (2, 3):
        parts = [np.concatenate([b[0] for b in PackedBatches(real_ds, "train", 1000, num_shards=n, shard_id=r)])
                 for r in range(n)]
        both = np.concatenate(parts)
        assert len(both) == len(whole)
        np.testing.assert_array_equal(both[np.lexsort(both.T)], whole[np.lexsort(whole.T)])


def _rows(batches):
    return [tuple(np.concatenate([ids[i], dense[i]])) for ids, dense, label in batches for i in range(len(label))]


@pytest.mark.parametrize("old,new", [((2, 16, 20), (3, 16)), ((3, 16, 10), (2, 16)), ((4, 8, 5), (3, 16)),
                                     ((1, 64, 7), (2, 32))])
def test_an_epoch_resumed_in_another_layout_trains_every_remaining_sample_once(real_ds, old, new):
    """Old layout (ranks, batch) took `done` batches per rank; the new layout's ranks continue the epoch on what the
    old shards had left, dealt batch by batch: global batch g (rank batches concatenated) is the g-th cut of the old
    shards' remaining samples, shard after shard; none of them was trained on before; then a regular epoch."""
    old_n, old_b, done = old
    n, b = new
    kw = dict(shuffle=True, seed=5, epoch=1, drop_remainder=True)
    olds = [PackedBatches(real_ds, "train", old_b, num_shards=old_n, shard_id=k, **kw) for k in range(old_n)]
    consumed, rest = [], []
    for s in olds:
        s.max_batches = s.steps_per_epoch(old_n, old_b)
        taken = list(s)
        consumed += _rows(taken[:done])
        rest += _rows(taken[done:])
    ranks = [PackedBatches(real_ds, "train", b, num_shards=n, shard_id=k, **kw) for k in range(n)]
    assert all(r.continue_epoch(done, (old_n, old_b)) == (0, (old_n, old_b, done)) for r in ranks)
    steps = len(ranks[0])
    got = [list(r) for r in ranks]
    assert [len(g) for g in got] == [steps] * n and steps == len(rest) // (n * b)
    dealt = [row for g in range(steps) for k in range(n) for row in _rows([got[k][g]])]
    assert dealt == rest[:steps * n * b] and not set(dealt) & set(consumed)
    assert len(rest) - len(dealt) < n * b                          # only the last partial global batch is dropped
    assert all(r.leftover is None and r.epoch == 2 for r in ranks)  # the next epoch is a regular one
    # the same layout simply skips; a leftover stream continued in yet another layout is refused
    assert ranks[0].continue_epoch(3, (n, b)) == (3, None)
    with pytest.raises(ValueError, match=rf"can only be continued by {n + 1} rank\(s\) of batch {b}"):
        ranks[0].continue_epoch(2, (n + 1, b), old)


def test_format_3_datasets_still_read(real_ds, tmp_path):
    """A dataset of format 3 (MindRecord int32/float32 columns) reads as the same samples as its format-4 twin."""
    import json
    import os
    import shutil
    from mindspore.mindrecord import FileWriter
    from src.data.packed_format import METADATA, ROW_SCHEMA_V3, column, file_record, load_metadata
    import mindspore.dataset as ds
    old = tmp_path / "v3"
    old.mkdir()
    meta = load_metadata(real_ds)
    for name in os.listdir(real_ds):
        if not name.endswith((".mindrecord", ".mindrecord.db", METADATA)):
            shutil.copy(os.path.join(real_ds, name), old / name)
    for split_parts in meta["parts"].values():
        for name, _ in split_parts:
            writer = FileWriter(str(old / name), shard_num=1, overwrite=True)
            writer.add_schema(ROW_SCHEMA_V3, "criteo_packed")
            rows = [{k: column(v, k) for k, v in row.items()} for row in
                    ds.MindDataset(os.path.join(real_ds, name), shuffle=False).create_dict_iterator(output_numpy=True)]
            writer.write_raw_data(rows)
            writer.commit()
    meta.update(format_version=3, files={n: file_record(str(old / n)) for n in meta["files"]})
    (old / METADATA).write_text(json.dumps(meta))
    assert ROW_SCHEMA_V3["ids"]["type"] == "int32"
    for split in ("train", "test"):
        a = list(PackedBatches(real_ds, split, 100))
        b = list(PackedBatches(str(old), split, 100))
        assert len(a) == len(b) > 0
        for x, y in zip(a, b):
            for u, v in zip(x, y):
                assert u.dtype == v.dtype
                np.testing.assert_array_equal(u, v)
    meta.update(format_version=2)
    (old / METADATA).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format_version 2; this code reads formats 3, 4"):
        PackedBatches(str(old), "train", 100)
