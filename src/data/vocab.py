"""Categorical id assignment per slot: counting (vocabulary), hashing, or ids used as given.

Id layout of every slot in vocabulary mode:
  0       the value was missing (empty field)
  1       out of vocabulary: seen fewer than `threshold` times in the training lines, or never
  2..     values seen at least `threshold` times, most frequent first (ties: smaller value first)
Hashing mode (`max_ind_range` = M): 0 = missing, 1 + key % (M - 1) otherwise; M rows, no counting.
A key is the value itself (hex or decimal, uint32) or, for a string column, its 64-bit hash (uint64).
Id mode (`skip_id_convert` = 1): the field already holds an id; missing -> 0; rows = max id + 1.
"""
from typing import List, Optional, Tuple

import numpy as np

from src.data.feature_spec import Columns


class SlotMapper:
    """Maps one slot's keys (uint32 or uint64) + missing flags to int32 ids."""

    def __init__(self, mode: str, vocab_keys: Optional[np.ndarray] = None, max_ind_range: int = 0, max_id: int = 0):
        self.mode = mode
        if mode == "vocab":
            import pandas as pd     # here: a worker that only parses or hashes does not pay for the import
            self.index = pd.Index(vocab_keys)
            self.size = len(vocab_keys) + 2
        elif mode == "hash":
            self.modulus = max_ind_range - 1
            self.size = max_ind_range
        elif mode == "ids":
            self.size = int(max_id) + 1
        else:
            raise ValueError(f"unknown id mode {mode!r}")

    def __call__(self, values: np.ndarray, missing: np.ndarray) -> np.ndarray:
        """values uint32 or uint64 [n], missing bool [n] -> ids int32 [n] in [0, size)."""
        if self.mode == "vocab":
            ids = self.index.get_indexer(values).astype(np.int32)
            ids += 2                     # -1 (unknown) -> 1, position p -> p + 2
        elif self.mode == "hash":
            ids = (values % values.dtype.type(self.modulus)).astype(np.int32) + 1
        else:
            ids = values.astype(np.int32)
        ids[missing] = 0
        return ids


def map_ids(columns: Columns, mappers: List[SlotMapper], keys: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """A block's keys -> the dataset's ids, one row per id column (columns.slot_keys lays them out).

    keys uint32 or uint64 [lookups, n], missing bool [lookups, n] -> ids int32 [lookups, n]: a categorical slot
    through its mapper (missing -> 0); a multi_hot slot's columns through the slot's mapper, pads -> -1.
    mappers: one per slot (columns.slots)."""
    ids = np.empty(keys.shape, np.int32)
    cats = len(columns.categorical)
    for s in range(cats):
        ids[s] = mappers[s](keys[s], missing[s])
    for s, cols in enumerate(columns.slot_keys[cats:], cats):
        got = mappers[s](keys[cols].reshape(-1), missing[cols].reshape(-1))
        got[missing[cols].reshape(-1)] = -1
        ids[cols] = got.reshape(cols.stop - cols.start, -1)
    return ids


MERGE_ENTRIES = 1 << 24     # (value, count) pairs merged at once: bounds the merge's memory (~0.4 GB)


def merge_counts(parts: List[Tuple[np.ndarray, np.ndarray]], threshold: int) -> Tuple[np.ndarray, np.ndarray]:
    """Merge per-piece value counts of one slot into the vocabulary: (keys, counts int64) of the values seen
    >= threshold times, in id order (count desc, value asc).

    parts: per piece (keys uint32 or uint64 [m] sorted ascending, counts int64 [m]); they may be memory-mapped.
    The key range is cut into partitions of at most about MERGE_ENTRIES pairs, merged one at a time, so the
    memory is bounded whatever the number of pieces or distinct values.
    """
    dtype = parts[0][0].dtype if parts else np.dtype(np.uint32)
    bits = 8 * dtype.itemsize
    entries = sum(len(k) for k, _ in parts)
    n_part = max(1, -(-entries // MERGE_ENTRIES))
    cuts = [p * (1 << bits) // n_part for p in range(n_part + 1)]
    kept_keys, kept_counts = [], []
    import pandas as pd             # here: only the vocabulary merge and lookups need it
    for p in range(n_part):
        ks, cs = [], []
        for keys, counts in parts:
            lo = np.searchsorted(keys, dtype.type(cuts[p]))
            hi = len(keys) if p == n_part - 1 else np.searchsorted(keys, dtype.type(cuts[p + 1]))
            ks.append(np.asarray(keys[lo:hi]))
            cs.append(np.asarray(counts[lo:hi]))
        keys, counts = np.concatenate(ks), np.concatenate(cs)
        if not len(keys):
            continue
        codes, uniq = pd.factorize(keys, sort=False)
        total = np.bincount(codes, weights=counts, minlength=len(uniq)).astype(np.int64)
        keep = total >= threshold
        kept_keys.append(np.asarray(uniq, dtype)[keep])
        kept_counts.append(total[keep])
    keys = np.concatenate(kept_keys) if kept_keys else np.zeros(0, dtype)
    counts = np.concatenate(kept_counts) if kept_counts else np.zeros(0, np.int64)
    order = np.lexsort((keys, -counts))
    return keys[order], counts[order]
