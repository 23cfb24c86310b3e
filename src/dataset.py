"""Reading the packed MindRecord splits written by preprocessing.

`create_dataset(...)` is the model-zoo entry point: a MindSpore dataset yielding
  ids   int32   [B, slot_dim]
  dense float32 [B, dense_dim]
  label float32 [B, 1]
`PackedBatches` is the same stream as a plain Python iterable of numpy arrays (the training loop
uses it directly, with a prefetch thread).
"""
import json
import os

import numpy as np

from src.mindrecord_writer import COLUMNS

METADATA = "metadata.json"


class DatasetError(ValueError):
    """A dataset folder is missing or inconsistent; the message names the file."""


def load_metadata(dataset_path):
    path = os.path.join(dataset_path, METADATA)
    if not os.path.isfile(path):
        raise DatasetError(f"'{path}' not found: dataset_path must be a folder written by "
                           f"src/preprocess_data.py (DIR/mindrecord)")
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"'{path}' is not valid JSON: {exc}") from None


def table_sizes_for(cfg, meta):
    """Per-slot table sizes: the dataset's, checked against a non-empty categorical_feature_sizes."""
    sizes = list(meta["table_sizes"])
    if cfg.categorical_feature_sizes and list(cfg.categorical_feature_sizes) != sizes:
        diff = [i + 1 for i, (a, b) in enumerate(zip(cfg.categorical_feature_sizes, sizes)) if a != b]
        raise DatasetError(f"categorical_feature_sizes in the config disagrees with {METADATA} of the dataset "
                           f"(slots {diff[:5]}{'...' if len(diff) > 5 else ''}: config "
                           f"{[cfg.categorical_feature_sizes[i - 1] for i in diff[:3]]} vs dataset "
                           f"{[sizes[i - 1] for i in diff[:3]]}); set categorical_feature_sizes='[]' to use "
                           f"the dataset's")
    if meta["dense_dim"] != cfg.dense_dim or meta["slot_dim"] != cfg.slot_dim:
        raise DatasetError(f"dataset has dense_dim={meta['dense_dim']}, slot_dim={meta['slot_dim']} but the "
                           f"config says {cfg.dense_dim}, {cfg.slot_dim}")
    return sizes


def split_file(dataset_path, split):
    path = os.path.join(dataset_path, f"{split}.mindrecord")
    if not os.path.isfile(path):
        raise DatasetError(f"'{path}' not found (splits present: "
                           f"{sorted(f[:-11] for f in os.listdir(dataset_path) if f.endswith('.mindrecord'))})")
    return path


def shard_block(samples, pack_size, num_shards=1, shard_id=0):
    """(first packed row, end row, samples) of shard `shard_id`: rows [k*R//N, (k+1)*R//N) of the
    R = ceil(samples / pack_size) rows; only the split's last row may hold fewer than pack_size."""
    if not 0 <= shard_id < num_shards:
        raise DatasetError(f"shard_id {shard_id} is not in [0, {num_shards})")
    rows = -(-samples // pack_size)
    lo, hi = shard_id * rows // num_shards, (shard_id + 1) * rows // num_shards
    n = (hi - lo) * pack_size - (rows * pack_size - samples if hi == rows and hi > lo else 0)
    return lo, hi, n


def shard_sizes(meta, split, num_shards):
    """Samples of every shard of a split, from metadata.json alone (no data read)."""
    return [shard_block(meta["samples"][split], meta["pack_size"], num_shards, k)[2] for k in range(num_shards)]


class PackedBatches:
    """Iterable of (ids int32 [B,S], dense float32 [B,D], label float32 [B,1]) numpy batches.

    shuffle: samples are mixed within windows of `shuffle_buffer_records` packed rows with a
    generator seeded by (seed, epoch); the stored training order is already a uniform permutation.
    Each call of `iter(...)` is one epoch; `epoch` counts them. `skip_batches` drops the first
    batches of the first epoch (resuming mid-epoch); `max_batches` ends every epoch after that many
    (distributed ranks must all run the same number of steps).
    Sharding gives shard k the contiguous block of packed rows [k*R//N, (k+1)*R//N): every sample
    is in exactly one shard (MindDataset's own num_shards repeats rows to even the shards out).
    """

    def __init__(self, dataset_path, split, batch_size, shuffle=False, seed=0, epoch=0, num_shards=1,
                 shard_id=0, drop_remainder=False, shuffle_buffer_records=64, skip_batches=0, max_batches=None):
        self.meta = load_metadata(dataset_path)
        self.file = split_file(dataset_path, split)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.epoch, self.num_shards, self.shard_id = epoch, num_shards, shard_id
        self.drop_remainder = drop_remainder
        self.window = shuffle_buffer_records
        self.skip_batches, self.max_batches = skip_batches, max_batches
        self.slot_dim, self.dense_dim = self.meta["slot_dim"], self.meta["dense_dim"]
        self.row_lo, self.row_hi, self.samples = shard_block(self.meta["samples"][split], self.meta["pack_size"],
                                                             num_shards, shard_id)

    def full_batches(self):
        return self.samples // self.batch_size

    def __len__(self):
        n = self.full_batches() if self.drop_remainder else -(-self.samples // self.batch_size)
        return n if self.max_batches is None else min(n, self.max_batches)

    def _rows(self):
        import mindspore.dataset as ds
        if self.row_hi <= self.row_lo:
            return
        sampler = ds.SequentialSampler(start_index=self.row_lo, num_samples=self.row_hi - self.row_lo)
        data = ds.MindDataset(self.file, columns_list=COLUMNS, sampler=sampler)
        for ids, dense, label in data.create_tuple_iterator(output_numpy=True, num_epochs=1):
            yield ids.reshape(-1, self.slot_dim), dense.reshape(-1, self.dense_dim), label

    def _windows(self, rng):
        buf = []
        for row in self._rows():
            buf.append(row)
            if len(buf) >= self.window:
                yield self._mix(buf, rng)
                buf = []
        if buf:
            yield self._mix(buf, rng)

    def _mix(self, buf, rng):
        ids = np.concatenate([b[0] for b in buf])
        dense = np.concatenate([b[1] for b in buf])
        label = np.concatenate([b[2] for b in buf])
        if rng is not None:
            p = rng.permutation(len(label))
            ids, dense, label = ids[p], dense[p], label[p]
        return ids, dense, label

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch]) if self.shuffle else None
        skip, self.skip_batches = self.skip_batches, 0
        self.epoch += 1
        bs = self.batch_size
        rest = None
        index = 0
        for ids, dense, label in self._windows(rng):
            if rest is not None:
                ids = np.concatenate([rest[0], ids])
                dense = np.concatenate([rest[1], dense])
                label = np.concatenate([rest[2], label])
            full = (len(label) // bs) * bs
            for lo in range(0, full, bs):
                if self.max_batches is not None and index >= self.max_batches:
                    return
                if index >= skip:
                    yield ids[lo:lo + bs], dense[lo:lo + bs], label[lo:lo + bs, None]
                index += 1
            rest = (ids[full:], dense[full:], label[full:]) if full < len(label) else None
        if rest is not None and not self.drop_remainder and index >= skip and \
                (self.max_batches is None or index < self.max_batches):
            yield rest[0], rest[1], rest[2][:, None]


def create_dataset(dataset_path, split="train", batch_size=128, shuffle=None, seed=0, num_shards=1, shard_id=0,
                   drop_remainder=None, shuffle_buffer_records=64):
    """MindSpore dataset over one split. Training (`split='train'`) is shuffled and drops the last
    partial batch by default; evaluation keeps every sample (the last batch may be smaller)."""
    import mindspore.dataset as ds
    train = split == "train"
    source = PackedBatches(dataset_path, split, batch_size, shuffle=train if shuffle is None else shuffle,
                           seed=seed, num_shards=num_shards, shard_id=shard_id,
                           drop_remainder=train if drop_remainder is None else drop_remainder,
                           shuffle_buffer_records=shuffle_buffer_records)
    return ds.GeneratorDataset(source, column_names=["ids", "dense", "label"], shuffle=False)
