"""Reading the packed MindRecord splits written by preprocessing.

`create_dataset(...)` is the model-zoo entry point: a MindSpore dataset yielding
  ids   int32   [B, L]   L = slot_dim, or with multi_hot features ids_per_sample (a list's pads are -1)
  dense float32 [B, dense_dim]
  label float32 [B, 1]
`PackedBatches` is the same stream as a plain Python iterable of numpy arrays (the training loop
uses it directly, with a prefetch thread).
"""
from typing import TYPE_CHECKING, Iterator, Optional, Tuple

import numpy as np

if TYPE_CHECKING:                 # annotations only; mindspore is imported where it runs
    import mindspore

from src.data.packed_format import (COLUMNS, column, ids_per_sample, load_metadata, shard_block, shard_sizes,
                                    split_parts)

Batch = Tuple[np.ndarray, np.ndarray, np.ndarray]   # ids int32 [B, S], dense float32 [B, Dn], label float32 [B, 1]


class PackedBatches:
    """Iterable of (ids int32 [B,S], dense float32 [B,D], label float32 [B,1]) numpy batches.

    The split's parts are streamed one at a time (never loaded whole). shuffle: every epoch reads the
    parts in a new order and mixes samples within windows of `shuffle_buffer_records` packed rows, with
    generators seeded by (seed, epoch); the stored training order is already a uniform permutation.
    Each call of `iter(...)` is one epoch; `epoch` counts them. `skip_batches` drops the first
    batches of the first epoch (resuming mid-epoch in the same layout; continue_epoch resumes in any layout);
    `max_batches` ends every epoch after that many (distributed ranks must all run the same number of steps).
    Sharding gives shard k its block of packed rows of every part (`packed_format.shard_block`): every
    sample is in exactly one shard.
    """

    def __init__(self, dataset_path: str, split: str, batch_size: int, shuffle: bool = False, seed: int = 0,
                 epoch: int = 0, num_shards: int = 1, shard_id: int = 0, drop_remainder: bool = False,
                 shuffle_buffer_records: int = 64, skip_batches: int = 0, max_batches: Optional[int] = None):
        self.dataset_path, self.split = dataset_path, split
        self.meta = load_metadata(dataset_path)
        self.parts = split_parts(dataset_path, self.meta, split)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.epoch, self.num_shards, self.shard_id = epoch, num_shards, shard_id
        self.drop_remainder = drop_remainder
        self.window = shuffle_buffer_records
        self.skip_batches, self.max_batches = skip_batches, max_batches
        self.leftover: Optional[Tuple[int, int, int]] = None    # the next epoch is a leftover stream (see continue_epoch)
        self.lookups, self.dense_dim = ids_per_sample(self.meta), self.meta["dense_dim"]
        self.blocks = [shard_block(n, self.meta["pack_size"], num_shards, shard_id) for _, n in self.parts]
        self.samples = sum(b[2] for b in self.blocks)

    def steps_per_epoch(self, shards: int, batch: int) -> int:
        """Batches of every rank in a regular training epoch of `shards` ranks at `batch` per rank: the smallest
        shard's full batches (all ranks run the same number of steps)."""
        return min(shard_sizes(self.meta, self.split, shards)) // batch

    def continue_epoch(self, done: int, layout: Tuple[int, int],
                       leftover: Optional[Tuple[int, int, int]] = None) -> Tuple[int, Optional[Tuple[int, int, int]]]:
        """Make the next iteration continue epoch `self.epoch` after `done` batches taken per rank in `layout`
        (shards, batch per rank): of that epoch's regular stream, or (leftover = (shards, batch, done) of the layout
        that started the epoch) of its leftover stream. Returns (batches of the coming stream to skip, its leftover),
        the position to record from now on.
          same layout           the first `done` batches are skipped: exactly the stream of an uninterrupted run.
          another layout        the epoch goes on with the leftover stream: the samples each of the old layout's
                                shards had still to train on in this epoch, shard after shard, cut into global
                                batches of shards x batch that are dealt to the ranks (rank k takes the k-th slice).
                                Every remaining sample is trained on once; only the last partial global batch is
                                dropped, as at every epoch's end.
        A leftover stream continued mid-way in yet another layout is refused (ValueError)."""
        here = (self.num_shards, self.batch_size)
        if done == 0 and leftover is None:
            return 0, None
        if tuple(layout) == here:
            self.skip_batches, self.leftover = done, (tuple(leftover) if leftover else None)
            return done, self.leftover
        if leftover:
            raise ValueError(f"this checkpoint is {done} steps into the rest of an epoch that {leftover[0]} rank(s) "
                             f"started and {layout[0]} rank(s) of batch {layout[1]} continued; it can only be continued "
                             f"by {layout[0]} rank(s) of batch {layout[1]}. Resume with those, or from a checkpoint "
                             f"at an epoch's end")
        self.skip_batches, self.leftover = 0, (int(layout[0]), int(layout[1]), int(done))
        return 0, self.leftover

    def full_batches(self) -> int:
        """Batches of exactly batch_size samples in this shard."""
        return self.samples // self.batch_size

    def __len__(self) -> int:
        """Batches of the next epoch (a leftover stream's, when continue_epoch set one), skipped ones included."""
        if self.leftover is not None:
            shards, batch, done = self.leftover
            remaining = shards * (self.steps_per_epoch(shards, batch) - done) * batch
            return remaining // (self.num_shards * self.batch_size)
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
                label = column(label, "label")
                n = len(label)
                # MindRecord gives an empty column back as a scalar
                dense = column(dense, "dense") if self.dense_dim else np.zeros((n, 0), np.float32)
                yield column(ids, "ids").reshape(n, self.lookups), dense.reshape(n, self.dense_dim), label

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
        if self.leftover is not None:
            yield from self._leftover_epoch()
            return
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


    def _leftover_epoch(self) -> Iterator[Batch]:
        """One epoch of the leftover stream (continue_epoch): the old layout's shards' remaining batches, shard after
        shard, regrouped into global batches of num_shards x batch_size; this rank yields its slice of each."""
        shards, batch, done = self.leftover
        count, skip = len(self), self.skip_batches
        epoch, n, b, k = self.epoch, self.num_shards, self.batch_size, self.shard_id
        self.leftover, self.skip_batches, self.epoch = None, 0, self.epoch + 1
        old_steps = self.steps_per_epoch(shards, batch)
        buf, have, g = [], 0, 0
        for old in range(shards):
            stream = PackedBatches(self.dataset_path, self.split, batch, shuffle=self.shuffle, seed=self.seed,
                                   epoch=epoch, num_shards=shards, shard_id=old, drop_remainder=True,
                                   shuffle_buffer_records=self.window, skip_batches=done, max_batches=old_steps)
            for part in stream:
                buf.append(part)
                have += len(part[2])
                while have >= n * b and g < count:
                    cat = [np.concatenate([x[i] for x in buf]) for i in range(3)]
                    if g >= skip:
                        yield tuple(c[k * b:(k + 1) * b] for c in cat)
                    g += 1
                    buf, have = [tuple(c[n * b:] for c in cat)], have - n * b


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
