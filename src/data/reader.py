"""Reading the packed MindRecord splits written by preprocessing.

`create_dataset(...)` is the model-zoo entry point: a MindSpore dataset yielding
  ids   int32   [B, slot_dim]
  dense float32 [B, dense_dim]
  label float32 [B, 1]
`PackedBatches` is the same stream as a plain Python iterable of numpy arrays (the training loop
uses it directly, with a prefetch thread).
"""
from typing import TYPE_CHECKING, Iterator, Optional, Tuple

import numpy as np

if TYPE_CHECKING:                 # annotations only; mindspore is imported where it runs
    import mindspore

from src.data.packed_format import COLUMNS, load_metadata, shard_block, split_parts

Batch = Tuple[np.ndarray, np.ndarray, np.ndarray]   # ids int32 [B, S], dense float32 [B, Dn], label float32 [B, 1]


class PackedBatches:
    """Iterable of (ids int32 [B,S], dense float32 [B,D], label float32 [B,1]) numpy batches.

    The split's parts are streamed one at a time (never loaded whole). shuffle: every epoch reads the
    parts in a new order and mixes samples within windows of `shuffle_buffer_records` packed rows, with
    generators seeded by (seed, epoch); the stored training order is already a uniform permutation.
    Each call of `iter(...)` is one epoch; `epoch` counts them. `skip_batches` drops the first
    batches of the first epoch (resuming mid-epoch); `max_batches` ends every epoch after that many
    (distributed ranks must all run the same number of steps).
    Sharding gives shard k its block of packed rows of every part (`packed_format.shard_block`): every
    sample is in exactly one shard.
    """

    def __init__(self, dataset_path: str, split: str, batch_size: int, shuffle: bool = False, seed: int = 0,
                 epoch: int = 0, num_shards: int = 1, shard_id: int = 0, drop_remainder: bool = False,
                 shuffle_buffer_records: int = 64, skip_batches: int = 0, max_batches: Optional[int] = None):
        self.meta = load_metadata(dataset_path)
        self.parts = split_parts(dataset_path, self.meta, split)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.epoch, self.num_shards, self.shard_id = epoch, num_shards, shard_id
        self.drop_remainder = drop_remainder
        self.window = shuffle_buffer_records
        self.skip_batches, self.max_batches = skip_batches, max_batches
        self.slot_dim, self.dense_dim = self.meta["slot_dim"], self.meta["dense_dim"]
        self.blocks = [shard_block(n, self.meta["pack_size"], num_shards, shard_id) for _, n in self.parts]
        self.samples = sum(b[2] for b in self.blocks)

    def full_batches(self) -> int:
        """Batches of exactly batch_size samples in this shard."""
        return self.samples // self.batch_size

    def __len__(self) -> int:
        n = self.full_batches() if self.drop_remainder else -(-self.samples // self.batch_size)
        return n if self.max_batches is None else min(n, self.max_batches)

    def _rows(self, order):
        import mindspore.dataset as ds
        for i in order:
            lo, hi, _ = self.blocks[i]
            if hi <= lo:
                continue
            sampler = ds.SequentialSampler(start_index=lo, num_samples=hi - lo)
            data = ds.MindDataset(self.parts[i][0], columns_list=list(COLUMNS), sampler=sampler)
            for ids, dense, label in data.create_tuple_iterator(output_numpy=True, num_epochs=1):
                yield ids.reshape(-1, self.slot_dim), dense.reshape(-1, self.dense_dim), label

    def _windows(self, rng):
        buf = []
        order = rng.permutation(len(self.parts)) if rng is not None else range(len(self.parts))
        for row in self._rows(order):
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

    def __iter__(self) -> Iterator[Batch]:
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


def create_dataset(dataset_path: str, split: str = "train", batch_size: int = 128, shuffle: Optional[bool] = None,
                   seed: int = 0, num_shards: int = 1, shard_id: int = 0, drop_remainder: Optional[bool] = None,
                   shuffle_buffer_records: int = 64) -> "mindspore.dataset.GeneratorDataset":
    """MindSpore dataset over one split. Training (`split='train'`) is shuffled and drops the last
    partial batch by default; evaluation keeps every sample (the last batch may be smaller)."""
    import mindspore.dataset as ds
    train = split == "train"
    source = PackedBatches(dataset_path, split, batch_size, shuffle=train if shuffle is None else shuffle,
                           seed=seed, num_shards=num_shards, shard_id=shard_id,
                           drop_remainder=train if drop_remainder is None else drop_remainder,
                           shuffle_buffer_records=shuffle_buffer_records)
    return ds.GeneratorDataset(source, column_names=["ids", "dense", "label"], shuffle=False)
