"""The transform preprocessing fitted, re-applied to new raw data: a scoring line becomes the ids and dense values a
training line with the same fields became, bit for bit.

What was fitted (`FittedTransform`, saved as transform.json + vocab.npz in a model bundle):
    feature spec      the columns: format, header or names, label, dense, categorical, multi_hot (separator, max_len,
                      pooling), ignore; parsed by the same BlockParser as preprocessing (src/data/text_parser.py)
    ids               vocabulary mode: each slot's keys in id order (0 missing, 1 out of vocabulary, 2.. the
                      vocabulary); hashing mode: max_ind_range (1 + key % (M - 1)); id mode: the ids as written,
                      below the table sizes
    dense             log(1 + max(x, 0)), missing -> 0 (DENSE_TRANSFORM; the parser computes it)
    table sizes, the dataset's features and vocab_fingerprint (what the model was trained on)

    transform = FittedTransform.from_dataset(dataset_path, meta)      # at export
    columns = transform.columns(first_fields, "new.csv")              # label optional when scoring
    ids, dense, ok = transform.apply(columns, chunk)                  # chunk: a BlockParser's good lines
"""
import json
import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from src.data.feature_spec import (Columns, FeatureSpec, ref_name, resolve_for_scoring, spec_from_dict,
                                   training_columns)
from src.data.text_parser import Chunk
from src.data.vocab import SlotMapper, map_ids

TRANSFORM_FILE = "transform.json"
VOCAB_FILE = "vocab.npz"
DENSE_TRANSFORM = "log1p(max(x, 0)); missing -> 0"      # what text_parser.BlockParser computes for a dense value


class TransformError(ValueError):
    """A saved transform that cannot be used; the message names the file and key."""


@dataclass
class FittedTransform:
    """The fitted transform (see the module docstring). `folder`: where vocab.npz lives (vocabulary mode)."""
    feature_spec: dict
    id_mode: str
    max_ind_range: int
    table_sizes: Tuple[int, ...]
    features: list
    vocab_fingerprint: str
    header: Tuple[str, ...] = ()         # the training files' header (feature specs with one), in file order
    folder: str = ""
    _mappers: Optional[List[SlotMapper]] = field(default=None, repr=False, compare=False)
    _spec: Optional[FeatureSpec] = field(default=None, repr=False, compare=False)
    _rows: Optional[Tuple[List[str], Columns]] = field(default=None, repr=False, compare=False)

    @classmethod
    def from_dataset(cls, dataset_path: str, meta: dict) -> "FittedTransform":
        """The transform that made the dataset (its metadata.json `meta`; vocab.npz beside it). TransformError for a
        dataset whose ids are not its feature spec's reading of raw lines (made from another dataset, such as MLPerf's
        multi-hot Criteo from a one-hot one)."""
        out = cls(feature_spec=meta["feature_spec"], id_mode=meta["id_mode"],
                  max_ind_range=int(meta.get("max_ind_range") or 0), table_sizes=tuple(meta["table_sizes"]),
                  features=list(meta.get("features", [])), vocab_fingerprint=meta["vocab_fingerprint"],
                  header=tuple(meta.get("columns", ())), folder=dataset_path)
        spec = out.spec
        reads = {**{ref_name(n): ("categorical", 1) for n in spec.categorical},
                 **{ref_name(m.name): ("multi_hot", m.max_len) for m in spec.multi_hot}}
        for f in out.features:
            if f["kind"] != "dense" and reads.get(f["name"]) != (f["kind"], f.get("max_len", 1)):
                raise TransformError(f"dataset '{dataset_path}' was not made from raw lines by its feature spec: its "
                                     f"feature {f['name']} is {f['kind']} (max_len {f.get('max_len', 1)}), which "
                                     f"the spec reads as {reads.get(f['name'], ('nothing',))[0]}; a bundle needs "
                                     f"the transform that turned raw lines into the dataset")
        return out

    def record(self) -> dict:
        """transform.json's content."""
        return {"feature_spec": self.feature_spec, "id_mode": self.id_mode, "max_ind_range": self.max_ind_range,
                "table_sizes": list(self.table_sizes), "features": self.features,
                "vocab_fingerprint": self.vocab_fingerprint, "header": list(self.header),
                "dense_transform": DENSE_TRANSFORM,
                "vocab_file": VOCAB_FILE if self.id_mode == "vocab" else None}

    def save(self, folder: str) -> List[str]:
        """Write transform.json (and in vocabulary mode vocab.npz: each slot's keys in id order, without the counts)
        into `folder`; returns the file names written."""
        written = [TRANSFORM_FILE]
        if self.id_mode == "vocab":
            with np.load(os.path.join(self.folder, VOCAB_FILE)) as z:
                keys = {f"C{s + 1}_keys": z[f"C{s + 1}_keys"] for s in range(len(self.table_sizes))}
            np.savez(os.path.join(folder, VOCAB_FILE), **keys)
            written.append(VOCAB_FILE)
        with open(os.path.join(folder, TRANSFORM_FILE), "w", encoding="utf-8") as f:
            json.dump(self.record(), f, indent=1)
        return written

    @classmethod
    def load(cls, folder: str) -> "FittedTransform":
        """The transform saved in `folder` (save's files); TransformError naming what is wrong."""
        path = os.path.join(folder, TRANSFORM_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                rec = json.load(f)
            if rec.get("dense_transform") != DENSE_TRANSFORM:
                raise TransformError(f"'{path}': dense_transform {rec.get('dense_transform')!r} is not this "
                                     f"code's ({DENSE_TRANSFORM!r}): score with the project version that wrote it")
            return cls(feature_spec=rec["feature_spec"], id_mode=rec["id_mode"], max_ind_range=rec["max_ind_range"],
                       table_sizes=tuple(rec["table_sizes"]), features=rec["features"],
                       vocab_fingerprint=rec["vocab_fingerprint"], header=tuple(rec.get("header", ())),
                       folder=folder)
        except (OSError, ValueError, KeyError) as exc:
            if isinstance(exc, TransformError):
                raise
            raise TransformError(f"'{path}' is not a saved transform ({type(exc).__name__}: {exc})") from None

    @property
    def spec(self) -> FeatureSpec:
        """The feature spec the dataset was made with (read once)."""
        if self._spec is None:
            self._spec = spec_from_dict(self.feature_spec, f"the model's feature spec ({TRANSFORM_FILE})")
        return self._spec

    def columns(self, first_fields: Sequence[str], where: str) -> Columns:
        """The spec resolved against a file to score (its first line's fields): label and ignored columns optional."""
        return resolve_for_scoring(self.spec, first_fields, where)

    def line_columns(self, fields: Sequence[str], where: str) -> Columns:
        """The columns of raw lines in the training files' own layout, without their header (a request's lines;
        `fields`: the first line's): the training header for a spec with one, less the label when the lines have one
        field fewer. TransformError when the dataset did not record its header (made before it did)."""
        spec = self.spec
        if spec.header and not self.header:
            raise TransformError("the model's training data had a header that its dataset did not record (made by "
                                 "an older version): send rows by column name instead of raw lines")
        train = list(self.header) if spec.header else training_columns(spec)
        if len(fields) not in (len(train), len(train) - 1):
            raise TransformError(f"{where} has {len(fields)} fields; the model was trained on {len(train)} (give "
                                 f"{len(train)}, or {len(train) - 1} without the label column)")
        if not spec.header:
            return resolve_for_scoring(spec, fields, where)
        label = spec.label
        return resolve_for_scoring(spec, [n for n in train if len(fields) == len(train) or n != label], where)

    def row_layout(self) -> Tuple[List[str], Columns]:
        """(the field order, its columns) in which rows given by column name are written as lines: the features
        (dense, categorical, multi_hot) for a spec with a header, the training layout less the label without one.
        TransformError for a spec whose columns have no names (indexes only)."""
        if self._rows is None:
            spec = self.spec
            if spec.header:
                names = [*spec.dense, *spec.categorical, *(m.name for m in spec.multi_hot)]
            elif spec.names:
                names = [n for n in spec.names if n != spec.label]
            else:
                raise TransformError("the model's columns have no names (its feature spec gives 0-based indexes): "
                                     "send raw lines in the training layout instead of rows")
            self._rows = names, resolve_for_scoring(spec, names, "the request")
        return self._rows

    @property
    def parse_mode(self) -> str:
        """The BlockParser mode: "ids" reads decimal ids as they are, else keys in the spec's format."""
        return "ids" if self.id_mode == "ids" else "vocab"

    def mappers(self) -> List[SlotMapper]:
        """One id mapper per slot, built once (vocabulary mode reads vocab.npz)."""
        if self._mappers is None:
            if self.id_mode == "vocab":
                with np.load(os.path.join(self.folder, VOCAB_FILE)) as z:
                    self._mappers = [SlotMapper("vocab", vocab_keys=z[f"C{s + 1}_keys"])
                                     for s in range(len(self.table_sizes))]
            elif self.id_mode == "hash":
                self._mappers = [SlotMapper("hash", max_ind_range=self.max_ind_range)] * len(self.table_sizes)
            else:
                self._mappers = [SlotMapper("ids", max_id=n - 1) for n in self.table_sizes]
        return self._mappers

    def apply(self, columns: Columns, chunk: Chunk) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A parsed chunk of n good lines -> (ids int32 [n, L], dense float32 [n, Dn], ok bool [n]): the dataset's
        ids (-1 pads in multi_hot columns) and dense values; ok is False where an id-mode id lies beyond the trained
        table (no other transform can fail)."""
        ids = map_ids(columns, self.mappers(), chunk.keys, chunk.missing)
        ok = np.ones(ids.shape[1], bool)
        if self.id_mode == "ids":
            for s, cols in enumerate(columns.slot_keys):
                ok &= (ids[cols] < self.table_sizes[s]).all(0)
        return np.ascontiguousarray(ids.T), np.ascontiguousarray(chunk.dense.T), ok
