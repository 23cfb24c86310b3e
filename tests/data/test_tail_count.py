"""Split tail's counting thread: a piece is handed out while the file is still being counted only when all its lines
are surely training lines; once counted, every piece, with the exact split; a wrong train_line_count is named."""
import pytest

from src.data.tail_count import TailCounter
from src.data.text_parser import InputFormatError


def _file(tmp_path, lines=700, header=False):
    path = tmp_path / "train.txt"
    path.write_text(("h\n" if header else "") + "".join(f"{i}\t{'x' * (i % 13)}\n" for i in range(lines)))
    return str(path)


def test_pieces_are_ready_once_their_split_is_known(tmp_path):
    counter = TailCounter(_file(tmp_path), 256, header=False, train_line_count=0, val_split=True)
    assert counter.split() == (700, 600, 50)
    full = counter.ready(0)
    assert [k for k, _, _ in full] == list(range(counter.n)) and {n for _, _, n in full} == {600}
    counts = list(counter.counts)
    for m in range(1, len(counts)):                          # as if the thread had counted m pieces so far
        counter.finished.clear()
        counter.counts = counts[:m]
        c = sum(counts[:m])
        got = counter.ready(0)
        assert all(offset + counts[k] <= c - c // 7 == n_train for k, offset, n_train in got)
        assert len(got) == m or sum(counts[:len(got) + 1]) > c - c // 7      # the next one might hold test lines
        assert [offset for _, offset, _ in got] == [sum(counts[:k]) for k, _, _ in got]
    counter.finished.set()
    counter.counts = counts
    assert counter.ready(3) == full[3:]


def test_header_and_a_wrong_line_count(tmp_path):
    counter = TailCounter(_file(tmp_path, header=True), 1 << 20, header=True, train_line_count=0, val_split=False)
    assert counter.split() == (700, 600, 0) and counter.ready(0) == [(0, 0, 600)]
    wrong = TailCounter(_file(tmp_path), 256, header=False, train_line_count=701, val_split=False)
    wrong.finished.wait()
    wrong.finished.clear()                                     # as while counting: with the count given, every
    got = wrong.ready(0)                                       # counted piece is handed out with its split at once
    assert len(got) == wrong.n and {n for _, _, n in got} == {701 - 701 // 7}
    wrong.finished.set()
    with pytest.raises(InputFormatError, match="has 700 lines but train_line_count=701"):
        wrong.ready(0)
