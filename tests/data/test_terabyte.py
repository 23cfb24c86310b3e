"""Criteo Terabyte layout: day files (plain and gzip), the day split, parallel and resumable
preprocessing that gives the same dataset for any worker count, and the reader streaming many parts."""
import gzip
import json
import os
import shutil
import sys

import numpy as np
import pytest

from fixtures.commands import kill_when, run_py
from fixtures.paths import make_cfg
from src.data.text_parser import InputFormatError
from src.data.packed_format import shard_sizes
from src.data.preprocess import preprocess
from src.data.reader import PackedBatches

DAYS, LINES = 4, 800
SETTINGS = ["--chunk_bytes=16384", "--shuffle_bucket_lines=700", "--pack_size=64", "--val_split=True"]


def _copy_days(src, dst, compress=False):
    os.makedirs(dst, exist_ok=True)
    for d in range(DAYS):
        if compress:
            with open(os.path.join(src, f"day_{d}"), "rb") as f, gzip.open(os.path.join(dst, f"day_{d}.gz"), "wb") as g:
                g.write(f.read())
        else:
            shutil.copy(os.path.join(src, f"day_{d}"), dst)


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    """4 synthetic day files of 800 lines, and their dataset made by 2 workers, the workers writing the parts (as for
    an input above ONE_WRITER_BELOW; smaller ones are written by the parent)."""
    from src.data import preprocess as module
    from src.data.synthetic import generate_days
    d = tmp_path_factory.mktemp("days")
    generate_days(str(d / "text"), DAYS, LINES, seed=9, progress=False)
    _copy_days(d / "text", d / "w2")
    below, module.ONE_WRITER_BELOW = module.ONE_WRITER_BELOW, 0
    try:
        meta = preprocess(make_cfg(f"--data_path={d / 'w2'}", "--workers=2", *SETTINGS), progress=False)
    finally:
        module.ONE_WRITER_BELOW = below
    return d, meta


def test_day_split_counts_and_many_parts(days):
    _, meta = days
    assert meta["input_files"] == [f"day_{d}" for d in range(DAYS)]
    assert meta["lines"] == {"total": DAYS * LINES, "train": (DAYS - 1) * LINES, "val": LINES // 2, "test": LINES // 2}
    assert meta["samples"] == {"train": (DAYS - 1) * LINES, "val": LINES // 2, "test": LINES // 2}
    assert len(meta["parts"]["train"]) == 4 and "day_3 (the last day) is held out" in meta["split"]
    stats = json.load(open(os.path.join(meta["dataset_path"], "stats.json")))
    assert stats["train_samples"] == (DAYS - 1) * LINES


def test_one_worker_and_gzip_give_the_same_dataset(days, tmp_path):
    """workers=1 on plain files and workers=2 on gzip files (both: the parts written by the parent) write
    byte-identical datasets (same samples, same order, same ids) as the module's workers=2 run on plain files (the
    parts written by the workers)."""
    d, ref = days
    _copy_days(d / "text", tmp_path / "w1")
    one = preprocess(make_cfg(f"--data_path={tmp_path / 'w1'}", "--workers=1", *SETTINGS), progress=False)
    assert one["files"] == ref["files"] and one["parts"] == ref["parts"]
    _copy_days(d / "text", tmp_path / "gz", compress=True)
    gz = preprocess(make_cfg(f"--data_path={tmp_path / 'gz'}", "--workers=2", *SETTINGS), progress=False)
    assert gz["files"] == ref["files"]


def test_gzip_pieces_parsed_in_blocks_as_they_are_inflated(days, tmp_path, monkeypatch):
    """A gzip file's pieces are parsed block by block while the file is inflated: the same dataset, and a bad line
    in a later block is named by its line in the file."""
    from src.data import pieces
    d, ref = days
    monkeypatch.setattr(pieces, "STREAM_BLOCK_BYTES", 4096)      # 4 or 5 blocks per 16 KB piece
    _copy_days(d / "text", tmp_path / "gz", compress=True)
    one = preprocess(make_cfg(f"--data_path={tmp_path / 'gz'}", "--workers=1", *SETTINGS), progress=False)
    assert one["files"] == ref["files"]
    lines = open(d / "text" / "day_1").read().splitlines(keepends=True)
    fields = lines[700].split("\t")
    fields[2] = "y"                                          # line 701 of day_1: past the first 16 KB piece's blocks
    lines[700] = "\t".join(fields)
    with gzip.open(tmp_path / "gz" / "day_1.gz", "wt") as g:
        g.write("".join(lines))
    with pytest.raises(InputFormatError, match=r"day_1.gz:701: dense value is not an integer"):
        preprocess(make_cfg(f"--data_path={tmp_path / 'gz'}", "--workers=1", "--strict=1", *SETTINGS), progress=False)


def test_held_out_day_is_in_file_order_and_halves(days):
    """val = the first ceil(n/2) lines of the last day, test = the rest, both in file order."""
    d, meta = days
    labels = [int(line.split("\t", 1)[0]) for line in open(d / "text" / f"day_{DAYS - 1}")]
    got = {s: np.concatenate([b[2][:, 0] for b in PackedBatches(meta["dataset_path"], s, 1000)]) for s in ("val", "test")}
    np.testing.assert_array_equal(got["val"], labels[:LINES // 2])
    np.testing.assert_array_equal(got["test"], labels[LINES // 2:])


def _rows(batches):
    ids, dense = [], []
    for b in batches:
        ids.append(b[0])
        dense.append(b[1])
    rows = np.concatenate([np.concatenate(ids).astype(np.float64), np.concatenate(dense)], 1)
    return rows[np.lexsort(rows.T[::-1])]


def test_reader_streams_parts_once_per_epoch_split_exactly_across_ranks(days):
    _, meta = days
    ds = meta["dataset_path"]
    whole = _rows(PackedBatches(ds, "train", 100))
    assert len(whole) == meta["samples"]["train"]
    ranks = [PackedBatches(ds, "train", 50, shuffle=True, seed=3, num_shards=2, shard_id=k) for k in range(2)]
    assert [r.samples for r in ranks] == shard_sizes(meta, "train", 2)
    for _ in range(2):                                  # two epochs: each sample exactly once in each
        epoch = [list(r) for r in ranks]
        np.testing.assert_array_equal(_rows(epoch[0] + epoch[1]), whole)
    first = list(PackedBatches(ds, "train", 50, shuffle=True, seed=3, num_shards=2, shard_id=0))
    second = list(PackedBatches(ds, "train", 50, shuffle=True, seed=3, num_shards=2, shard_id=0, epoch=1))
    assert not np.array_equal(first[0][1], second[0][1])        # a new order every epoch
    resumed = list(PackedBatches(ds, "train", 50, shuffle=True, seed=3, num_shards=2, shard_id=0, skip_batches=7))
    for a, b in zip(first[7:], resumed):                         # resuming mid-epoch continues the same stream
        np.testing.assert_array_equal(a[1], b[1])
    assert len(resumed) == len(first) - 7


def test_killed_run_resumes_from_its_pieces(days, tmp_path):
    """kill -9 during phase A; the same command continues from the finished pieces and ends byte-identical."""
    d, ref = days
    _copy_days(d / "text", tmp_path)
    cmd = [sys.executable, "src/preprocess_data.py", f"--data_path={tmp_path}", "--workers=1", *SETTINGS]
    pieces = tmp_path / ".mindrecord.work" / "pieces"
    kill_when(cmd, lambda: pieces.is_dir() and sum(n.endswith(".npz") for n in os.listdir(pieces)) >= 10)
    assert not (tmp_path / "mindrecord").exists()
    r = run_py(*cmd[1:], timeout=300)
    assert r.returncode == 0, r.stderr[-1500:]
    assert "finished pieces are kept and skipped" in r.stderr
    assert json.load(open(tmp_path / "mindrecord" / "metadata.json"))["files"] == ref["files"]


def test_corrupt_day_files_are_named_with_the_line(days, tmp_path):
    d, _ = days
    _copy_days(d / "text", tmp_path / "bad")
    day1 = tmp_path / "bad" / "day_1"
    lines = open(day1).read().splitlines(keepends=True)
    fields = lines[500].split("\t")
    fields[1] = "x"                                         # line 501 of day_1: a dense value that is no integer
    lines[500] = "\t".join(fields)
    day1.write_text("".join(lines))
    with pytest.raises(InputFormatError, match=r"day_1:501: dense value is not an integer"):
        preprocess(make_cfg(f"--data_path={tmp_path / 'bad'}", "--strict=1", *SETTINGS), progress=False)
    meta = preprocess(make_cfg(f"--data_path={tmp_path / 'bad'}", *SETTINGS), progress=False)
    assert meta["bad_lines"]["first_lines"]["dense"] == ["day_1:501"]
    _copy_days(d / "text", tmp_path / "gz", compress=True)
    data = open(tmp_path / "gz" / "day_2.gz", "rb").read()
    open(tmp_path / "gz" / "day_2.gz", "wb").write(data[:len(data) // 2])      # a truncated download
    with pytest.raises(InputFormatError, match=r"day_2.gz: not a whole gzip file .* last complete line read was"):
        preprocess(make_cfg(f"--data_path={tmp_path / 'gz'}", *SETTINGS), progress=False)
    os.remove(tmp_path / "gz" / "day_1.gz")
    with pytest.raises(InputFormatError, match="day_1 is missing between day_0.gz and day_3.gz"):
        preprocess(make_cfg(f"--data_path={tmp_path / 'gz'}", *SETTINGS), progress=False)


def test_pieces_cut_plain_and_gzip_files_alike(tmp_path):
    from src.data.inputs import piece_count, read_piece, stream_blocks, stream_pieces
    from src.data.pieces import by_piece
    rng = np.random.default_rng(0)
    for trial in range(60):
        lines = [b"x" * int(n) for n in rng.integers(0, 12, int(rng.integers(1, 30)))]
        data = b"\n".join(lines) + (b"\n" if trial % 3 else b"")
        plain, packed = tmp_path / "f", tmp_path / "f.gz"
        plain.write_bytes(data)
        with gzip.open(packed, "wb") as g:
            g.write(data)
        c = int(rng.integers(1, 20))
        a = [read_piece(str(plain), k, c) for k in range(piece_count(str(plain), c))]
        assert a == [p for _, p in stream_pieces(str(plain), c, read_bytes=3)]
        assert a == [p for _, p in stream_pieces(str(packed), c, read_bytes=5)]
        assert b"".join(a) == (data if data.endswith(b"\n") else data + b"\n")
        block = int(rng.integers(1, 8))                           # the same pieces in blocks of whole lines
        blocks = list(stream_blocks(str(packed), c, read_bytes=4, block_bytes=block))
        assert [b"".join(p) for _, p in by_piece(iter(blocks))] == a
        assert all(t.endswith(b"\n") and t for _, t, last in blocks if not last)


def test_a_gzip_task_leaves_pieces_to_other_workers(days, tmp_path):
    """A gzip file's task leaves up to hand_off inflated pieces as text (named with their line offset) and parses the
    rest; the pieces parsed from those texts are the same files as a task that parses every piece itself."""
    from src.data.inputs import find_layout
    from src.data.pieces import HANDED, PieceJob, run_file, run_handed
    d, _ = days
    _copy_days(d / "text", tmp_path / "gz", compress=True)
    layout = find_layout(str(tmp_path / "gz"), None)
    day = layout.files[1]
    outputs = {}
    for hand_off in (0, 2):
        folder = tmp_path / f"pieces{hand_off}"
        folder.mkdir()
        job = PieceJob(folder=str(folder), columns=layout.columns, piece_bytes=16384, mode="vocab", strict=False,
                       seed=5, n_train=0, hand_off=hand_off)
        parsed = run_file(job, day)
        left = sorted(n for n in os.listdir(folder) if HANDED.match(n))
        assert len(left) == hand_off and not set(parsed) & {int(HANDED.match(n)[2]) for n in left}
        for name in left:
            run_handed(job, day, name)
        assert not any(n.endswith(".txt") for n in os.listdir(folder))
        outputs[hand_off] = {n: open(folder / n, "rb").read() for n in sorted(os.listdir(folder))}
    assert outputs[0] == outputs[2]
