"""Preprocessing phase B: the parsed pieces -> the dataset's part files, one part per task.

A training part is a run of shuffle buckets gathered from every piece and put in a random order by a
generator seeded by (seed, part); since every line drew its bucket uniformly, the concatenated parts
are a uniform random permutation of the training lines. A held-out part is a run of held-out lines in
file order. Each part is written as `{split}-{index:05d}.mindrecord` (+ MindRecord's `.db`) and marked
done by `{split}-{index:05d}.done` in the work folder (its sample count and checksums), written last, so a rerun skips it.
"""
import json
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from src.data.feature_spec import Columns
from src.data.packed_format import file_record
from src.data.pieces import record_dtype, unpack_missing
from src.data.vocab import SlotMapper, map_ids
from src.utils.staged_dir import write_json_atomic

PIECE_ROWS = 1 << 17    # samples mapped and written per step


@dataclass(frozen=True)
class RecordRange:
    """Records [start, end) of one piece's record file."""
    records: str
    start: int
    end: int


@dataclass(frozen=True)
class PartTask:
    """One part of one split: where its records are and where it goes. A training part lists no
    ranges: its worker reads them from the job's bucket table (one row per piece), so that neither
    the tasks nor the parent hold pieces x parts range objects."""
    split: str
    index: int
    samples: int
    ranges: Optional[Tuple[RecordRange, ...]] = None     # held-out parts

    @property
    def name(self) -> str:
        """The part's file name in the dataset folder."""
        return part_file_name(self.split, self.index)


def part_file_name(split: str, index: int) -> str:
    """`train-00003.mindrecord`: part `index` of `split`."""
    return f"{split}-{index:05d}.mindrecord"


@dataclass(frozen=True)
class PartJob:
    """What every part task shares (picklable): the output folder, the record layout, the id mapping."""
    out: str                           # the staged dataset folder
    markers: str                       # the work folder's marker folder
    columns: Columns
    pack_size: int
    seed: int
    mode: str                          # "vocab" | "hash" | "ids"
    vocab_file: Optional[str] = None   # vocab mode: vocab.npz
    max_ids: Optional[Tuple[int, ...]] = None
    bucket_table: Optional[str] = None  # training parts: `cuts.npy` [pieces, parts + 1] record offsets and
                                        # `pieces.json` (the pieces' record files) in this folder

    def marker(self, task: PartTask) -> str:
        """The file that marks the part done (holds its sample count)."""
        return os.path.join(self.markers, task.name[:-len(".mindrecord")] + ".done")

    def done(self, task: PartTask) -> Optional[dict]:
        """{"samples", "files": {name: {bytes, sha256}}} when the part was already written, else None."""
        marker = self.marker(task)
        if not os.path.isfile(marker):
            return None
        with open(marker, encoding="utf-8") as f:
            return json.load(f)


_MAPPERS: Dict[str, List[SlotMapper]] = {}     # per process: built once, used by every part


def mappers_for(job: PartJob) -> List[SlotMapper]:
    """The per-slot id mappers of a vocabulary or id mode job (vocabulary lookups are built once per process);
    hashing mode's records hold their ids already."""
    key = f"{job.mode}:{job.vocab_file}:{job.max_ids}"
    if key not in _MAPPERS:
        if job.mode == "vocab":
            with np.load(job.vocab_file) as z:
                _MAPPERS[key] = [SlotMapper("vocab", vocab_keys=z[f"C{s + 1}_keys"])
                                 for s in range(job.columns.slots)]
        else:
            _MAPPERS[key] = [SlotMapper("ids", max_id=m) for m in job.max_ids]
    return _MAPPERS[key]


def train_ranges(folder: str, index: int) -> List[RecordRange]:
    """The ranges of training part `index`: from every piece, its records of the part's buckets."""
    cuts = np.load(os.path.join(folder, "cuts.npy"), mmap_mode="r")
    with open(os.path.join(folder, "pieces.json"), encoding="utf-8") as f:
        records = json.load(f)
    lo, hi = np.asarray(cuts[:, index], np.int64), np.asarray(cuts[:, index + 1], np.int64)
    return [RecordRange(records[r], int(lo[r]), int(hi[r])) for r in np.flatnonzero(hi > lo)]


def _gather(ranges: List[RecordRange], dtype: np.dtype) -> np.ndarray:
    recs = [np.fromfile(s.records, dtype, count=s.end - s.start, offset=s.start * dtype.itemsize)
            for s in ranges if s.end > s.start]
    return np.concatenate(recs) if recs else np.zeros(0, dtype)


def write_part(job: PartJob, task: PartTask) -> dict:
    """Gather the part's records, shuffle them (training), map values to ids and write the part file;
    returns {"samples", "files": {name: {bytes, sha256}}} of its files (no work when it was already done)."""
    done = job.done(task)
    if done is not None:
        return done
    from src.data.writer import PackedWriter        # MindSpore is imported by the workers that write
    shuffle = task.ranges is None
    ranges = train_ranges(job.bucket_table, task.index) if shuffle else task.ranges
    rec = _gather(ranges, record_dtype(job.columns, job.mode))
    if len(rec) != task.samples:
        raise RuntimeError(f"part {task.name}: gathered {len(rec)} records, expected {task.samples}")
    if shuffle:     # np.take copies whole records (fancy indexing would go field by field)
        rec = np.take(rec, np.random.default_rng([job.seed, 13, task.index]).permutation(len(rec)))
    writer = PackedWriter(os.path.join(job.out, task.name), job.pack_size)
    for lo in range(0, len(rec), PIECE_ROWS):
        piece = rec[lo:lo + PIECE_ROWS]
        if job.mode == "hash":          # mapped in phase A
            ids = piece["ids"]
        else:
            ids = map_ids(job.columns, mappers_for(job), np.ascontiguousarray(piece["keys"].T),
                          unpack_missing(piece["missing"], job.columns.lookups)).T
        writer.write(ids, piece["dense"], piece["label"])
    result = {"samples": writer.close(), "files": {name: file_record(os.path.join(job.out, name))
                                                   for name in (task.name, task.name + ".db")}}
    write_json_atomic(job.marker(task), result)
    return result
