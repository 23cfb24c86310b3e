"""Writing one split as packed MindRecord rows (the row schema, format 4, is in src/data/packed_format.py)."""
import numpy as np
from mindspore.mindrecord import FileWriter

from src.data.packed_format import ROW_SCHEMA, pack_row


def _first_line(exc: Exception) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


class PackedWriter:
    """Appends samples to one MindRecord file in packed rows; `close()` commits it."""

    def __init__(self, path: str, pack_size: int, rows_per_write: int = 64):
        self.path = path
        self.pack = pack_size
        self.rows_per_write = rows_per_write
        self.writer = FileWriter(path, shard_num=1, overwrite=True)
        self.writer.add_schema(ROW_SCHEMA, "criteo_packed")
        self._buf = []          # pending (ids [n, S], dense [n, D], label [n]) pieces
        self._buffered = 0
        self.samples = 0
        self.rows = 0

    def write(self, ids: np.ndarray, dense: np.ndarray, label: np.ndarray) -> None:
        """Append samples. Args: ids int32 [n, slot_dim], dense float32 [n, dense_dim], label float32/uint8 [n]."""
        self._buf.append((ids, dense, label))
        self._buffered += len(label)
        if self._buffered >= self.pack * self.rows_per_write:
            self._flush(final=False)

    def _flush(self, final):
        if not self._buf:
            return
        ids = np.concatenate([b[0] for b in self._buf])
        dense = np.concatenate([b[1] for b in self._buf])
        label = np.concatenate([b[2] for b in self._buf]).astype(np.float32)
        n = len(label)
        full = n if final else (n // self.pack) * self.pack
        rows = []
        for lo in range(0, full, self.pack):
            hi = min(lo + self.pack, full)
            rows.append(pack_row(ids[lo:hi], dense[lo:hi], label[lo:hi]))
        if rows:
            try:
                self.writer.write_raw_data(rows)
            except RuntimeError as exc:
                raise OSError(f"MindRecord could not write '{self.path}' ({_first_line(exc)})") from None
            self.rows += len(rows)
            self.samples += full
        self._buf = [(ids[full:], dense[full:], label[full:])] if full < n else []
        self._buffered = n - full

    def close(self) -> int:
        """Write the last (possibly partial) row and commit the file; returns the samples written."""
        self._flush(final=True)
        try:
            self.writer.commit()
        except RuntimeError as exc:
            raise OSError(f"MindRecord could not write '{self.path}' ({_first_line(exc)})") from None
        return self.samples
