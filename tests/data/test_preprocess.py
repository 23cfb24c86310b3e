import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fixtures.datasets import read_split
from fixtures.paths import make_cfg
from src.data.text_parser import InputFormatError
from src.data.preprocess import preprocess


def _parse_fixture(path):
    labels, dense, cats = [], [], []
    with open(path) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            labels.append(int(fields[0]))
            dense.append([np.log1p(max(int(x), 0)) if x else 0.0 for x in fields[1:14]])
            cats.append(fields[14:])
    return np.array(labels), np.array(dense, np.float32), cats


def _expected_ids(cats, vocab):
    out = np.zeros((len(cats), 26), np.int32)
    for s in range(26):
        pos = {int(k): i + 2 for i, k in enumerate(vocab[f"C{s + 1}_keys"])}
        for r, row in enumerate(cats):
            v = row[s]
            out[r, s] = 0 if v == "" else pos.get(int(v, 16), 1)
    return out


def test_real_fixture_round_trip(real_dataset, fixture_file):
    data_dir, meta = real_dataset
    ds = os.path.join(data_dir, "mindrecord")
    assert meta["bad_lines"]["total"] == 0
    assert meta["lines"] == {"total": 1999, "train": 1999 - 285, "test": 285, "val": 0}
    assert meta["samples"] == {"train": 1714, "test": 285}
    labels, dense, cats = _parse_fixture(fixture_file)
    vocab = np.load(os.path.join(ds, "vocab.npz"), allow_pickle=False)
    ids = _expected_ids(cats, vocab)
    # table sizes = distinct training values + missing + OOV, built from the training lines only
    for s in range(26):
        distinct = {row[s] for row in cats[:1714] if row[s] != ""}
        assert meta["table_sizes"][s] == len(distinct) + 2
    # test split keeps file order
    t_ids, t_dense, t_label = read_split(ds, "test")
    np.testing.assert_array_equal(t_label[:, 0], labels[1714:])
    np.testing.assert_allclose(t_dense, dense[1714:], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(t_ids, ids[1714:])
    assert (t_ids == 1).any(), "values met only in the test lines map to the OOV id"
    # train split: a permutation of the training lines, not the file order
    r_ids, r_dense, r_label = read_split(ds, "train")
    got = np.concatenate([r_label, r_dense, r_ids.astype(np.float32)], 1)
    want = np.concatenate([labels[:1714, None], dense[:1714], ids[:1714].astype(np.float32)], 1)
    assert not np.allclose(got, want)
    order_got, order_want = np.lexsort(got.T[::-1]), np.lexsort(want.T[::-1])
    np.testing.assert_allclose(got[order_got], want[order_want], rtol=1e-6, atol=1e-6)
    stats = json.load(open(os.path.join(ds, "stats.json")))
    assert stats["train_samples"] == 1714


def test_shuffle_is_seeded_and_a_permutation(tmp_path, synth_dataset):
    data_dir, meta = synth_dataset
    d2 = tmp_path / "again"
    d2.mkdir()
    os.symlink(os.path.join(data_dir, "train.txt"), d2 / "train.txt")
    meta2 = preprocess(make_cfg(f"--data_path={d2}", "--pack_size=256", "--threshold=2",
                                "--shuffle_bucket_lines=3000"), progress=False)
    a = read_split(os.path.join(data_dir, "mindrecord"), "train")
    b = read_split(str(d2 / "mindrecord"), "train")
    assert meta2["table_sizes"] == meta["table_sizes"]
    ka = np.concatenate([a[2], a[1], a[0]], 1)
    kb = np.concatenate([b[2], b[1], b[0]], 1)
    assert not np.array_equal(ka, kb), "different bucket counts give different orders"
    np.testing.assert_array_equal(ka[np.lexsort(ka.T)], kb[np.lexsort(kb.T)])


def _corrupt(src, dst):
    lines = open(src).read().splitlines()
    bad = {}
    lines[4] = "\t".join(lines[4].split("\t")[:-2])                      # line 5: 38 fields
    bad[5] = "field_count"
    f = lines[9].split("\t"); f[3] = "12x"; lines[9] = "\t".join(f)        # line 10: dense not int
    bad[10] = "dense"
    f = lines[19].split("\t"); f[20] = "zz12ab34"; lines[19] = "\t".join(f)  # line 20: not hex
    bad[20] = "categorical"
    f = lines[29].split("\t"); f[0] = "2"; lines[29] = "\t".join(f)        # line 30: label 2
    bad[30] = "label"
    lines[39] = ""                                                         # line 40: empty
    bad[40] = "field_count"
    f = lines[1799].split("\t"); f[5] = "3.5"; lines[1799] = "\t".join(f)  # a test line
    bad[1800] = "dense"
    open(dst, "w").write("\n".join(lines) + "\n")
    return bad


def test_corrupted_copy_counts_each_reason(tmp_path, fixture_file):
    bad = _corrupt(fixture_file, tmp_path / "train.txt")
    meta = preprocess(make_cfg(f"--data_path={tmp_path}", "--train_line_count=1999"), progress=False)
    b = meta["bad_lines"]
    assert b["total"] == len(bad)
    assert b["counts"] == {"field_count": 2, "label": 1, "dense": 2, "categorical": 1}
    assert b["first_lines"]["field_count"] == [5, 40]
    assert b["first_lines"]["dense"] == [10, 1800]
    assert b["first_lines"]["categorical"] == [20] and b["first_lines"]["label"] == [30]
    assert meta["samples"]["train"] == 1714 - 5 and meta["samples"]["test"] == 285 - 1
    stored = json.load(open(tmp_path / "mindrecord" / "metadata.json"))
    assert stored["bad_lines"] == b


def test_strict_stops_at_the_first_bad_line(tmp_path, fixture_file):
    _corrupt(fixture_file, tmp_path / "train.txt")
    with pytest.raises(InputFormatError, match=r"train\.txt:5: wrong number of tab-separated fields: expected 40, found 38"):
        preprocess(make_cfg(f"--data_path={tmp_path}", "--strict=1"), progress=False)
    assert not os.path.exists(tmp_path / "mindrecord")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".mindrecord")]


def test_missing_empty_and_miscounted_input(tmp_path, fixture_file):
    with pytest.raises(InputFormatError, match="no train.txt, train.txt.gz or day_N"):
        preprocess(make_cfg(f"--data_path={tmp_path}"), progress=False)
    (tmp_path / "train.txt").write_text("")
    with pytest.raises(InputFormatError, match="is empty"):
        preprocess(make_cfg(f"--data_path={tmp_path}"), progress=False)
    os.remove(tmp_path / "train.txt")
    os.symlink(fixture_file, tmp_path / "train.txt")
    for n in (1000, 2500):
        with pytest.raises(InputFormatError, match=f"has 1999 lines but train_line_count={n}"):
            preprocess(make_cfg(f"--data_path={tmp_path}", f"--train_line_count={n}"), progress=False)
    assert not os.path.exists(tmp_path / "mindrecord")
    assert not os.path.exists(tmp_path / ".mindrecord.work")     # bad input: nothing kept to resume


def test_interrupted_run_leaves_no_readable_dataset_and_resumes(tmp_path, fixture_file, monkeypatch):
    os.symlink(fixture_file, tmp_path / "train.txt")
    good = preprocess(make_cfg(f"--data_path={tmp_path}"), progress=False)
    before = read_split(good["dataset_path"], "test")
    import src.data.writer as writer

    class Boom(RuntimeError):
        pass

    real_close = writer.PackedWriter.close

    def killed(self):
        raise Boom("interrupted while writing")
    monkeypatch.setattr(writer.PackedWriter, "close", killed)
    with pytest.raises(Boom):       # in this process (workers=1), where the patch applies
        preprocess(make_cfg(f"--data_path={tmp_path}", "--threshold=3", "--workers=1"), progress=False)
    # the earlier dataset is untouched and no partial one is visible; the finished pieces are kept
    meta = json.load(open(tmp_path / "mindrecord" / "metadata.json"))
    assert meta["threshold"] == 1
    after = read_split(good["dataset_path"], "test")
    np.testing.assert_array_equal(before[0], after[0])
    assert os.listdir(tmp_path / ".mindrecord.work" / "pieces")
    monkeypatch.setattr(writer.PackedWriter, "close", real_close)
    resumed = preprocess(make_cfg(f"--data_path={tmp_path}", "--threshold=3"), progress=False)
    assert resumed["threshold"] == 3 and not os.path.exists(tmp_path / ".mindrecord.work")


def test_a_live_run_is_not_disturbed(tmp_path, fixture_file):
    """The work folder is locked while its run lives: a second run is refused, naming it, whatever machine or
    container the first one runs in (the lock, not a pid, decides); once the first is gone the second runs."""
    from src.utils.staged_dir import OutputError
    os.symlink(fixture_file, tmp_path / "train.txt")
    live = tmp_path / ".mindrecord.work"
    live.mkdir()
    (live / ".lock").write_text("")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1]); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
                               str(live / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match="another run is writing .*mindrecord.work"):
            preprocess(make_cfg(f"--data_path={tmp_path}"), progress=False)
        assert (live / ".lock").exists()
    finally:
        holder.kill()
        holder.wait()
    preprocess(make_cfg(f"--data_path={tmp_path}"), progress=False)      # its run is gone now
    assert not live.exists()


def test_hashing_mode_val_split_and_gzip(tmp_path, fixture_file):
    import gzip
    with open(fixture_file, "rb") as src, gzip.open(tmp_path / "train.txt.gz", "wb") as dst:
        dst.write(src.read())
    meta = preprocess(make_cfg(f"--data_path={tmp_path}", "--max_ind_range=1000", "--val_split=True"),
                      progress=False)
    assert meta["table_sizes"] == [1000] * 26 and meta["id_mode"] == "hash"
    assert meta["samples"] == {"train": 1714, "val": 142, "test": 143}
    ids, _, _ = read_split(meta["dataset_path"], "val")
    assert ids.min() >= 0 and ids.max() < 1000
    labels = [int(l.split("\t", 1)[0]) for l in open(fixture_file)]
    np.testing.assert_array_equal(read_split(meta["dataset_path"], "test")[2][:, 0], labels[-143:])


def _independent_vocab_ids(cats, n_train, threshold):
    """Ids computed without the project's code: per slot, count the training lines' values; values seen
    >= threshold times get ids 2.. by descending count, ties by ascending 32-bit value; 1 = OOV, 0 = missing."""
    from collections import Counter
    out = np.zeros((len(cats), 26), np.int32)
    sizes = []
    for s in range(26):
        counts = Counter(int(row[s], 16) for row in cats[:n_train] if row[s] != "")
        kept = sorted((v for v, c in counts.items() if c >= threshold), key=lambda v: (-counts[v], v))
        ids = {v: i + 2 for i, v in enumerate(kept)}
        sizes.append(len(kept) + 2)
        for r, row in enumerate(cats):
            out[r, s] = 0 if row[s] == "" else ids.get(int(row[s], 16), 1)
    return out, sizes


def test_vocabulary_ids_match_an_independent_count(tmp_path, fixture_file):
    """threshold 2 on the real sample: frequencies, the tie order and the threshold -> OOV rule, computed
    here from the text alone (vocab.npz is not read)."""
    os.symlink(fixture_file, tmp_path / "train.txt")
    meta = preprocess(make_cfg(f"--data_path={tmp_path}", "--threshold=2"), progress=False)
    _, _, cats = _parse_fixture(fixture_file)
    want, sizes = _independent_vocab_ids(cats, 1714, threshold=2)
    assert meta["table_sizes"] == sizes
    np.testing.assert_array_equal(read_split(meta["dataset_path"], "test")[0], want[1714:])
    got = read_split(meta["dataset_path"], "train")[0]
    np.testing.assert_array_equal(got[np.lexsort(got.T)], want[:1714][np.lexsort(want[:1714].T)])
    assert (want[1714:] == 1).sum() > (want[:1714] == 1).sum() / 6, "singletons and unseen values are OOV"


def test_hashed_ids_follow_the_formula(tmp_path, fixture_file):
    """max_ind_range M: id = 1 + int(hex, 16) % (M - 1), missing -> 0, checked value by value in file order."""
    os.symlink(fixture_file, tmp_path / "train.txt")
    m = 977
    meta = preprocess(make_cfg(f"--data_path={tmp_path}", f"--max_ind_range={m}"), progress=False)
    _, _, cats = _parse_fixture(fixture_file)
    want = np.array([[0 if v == "" else 1 + int(v, 16) % (m - 1) for v in row] for row in cats[1714:]], np.int32)
    np.testing.assert_array_equal(read_split(meta["dataset_path"], "test")[0], want)
    assert meta["table_sizes"] == [m] * 26 and want.max() < m


def test_skip_id_convert_uses_decimal_ids_as_given(tmp_path, fixture_file):
    """skip_id_convert=1: fields already hold decimal ids; missing -> 0; a table has max id + 1 rows."""
    rng = np.random.default_rng(4)
    lines = []
    for line in open(fixture_file):
        f = line.rstrip("\n").split("\t")
        f[14:] = ["" if v == "" else str(int(rng.integers(1, 50 + 10 * s))) for s, v in enumerate(f[14:])]
        lines.append("\t".join(f) + "\n")
    (tmp_path / "train.txt").write_text("".join(lines))
    meta = preprocess(make_cfg(f"--data_path={tmp_path}", "--skip_id_convert=1"), progress=False)
    want = np.array([[0 if v == "" else int(v) for v in l.rstrip("\n").split("\t")[14:]] for l in lines], np.int32)
    assert meta["id_mode"] == "ids" and meta["table_sizes"] == [int(want[:, s].max()) + 1 for s in range(26)]
    np.testing.assert_array_equal(read_split(meta["dataset_path"], "test")[0], want[1714:])
    f = lines[5].rstrip("\n").split("\t")
    f[20] = "ab"                                         # hex, not a decimal id
    (tmp_path / "train.txt").write_text("".join(lines[:5] + ["\t".join(f) + "\n"] + lines[6:]))
    with pytest.raises(InputFormatError, match=r"train.txt:6: categorical value is not"):
        preprocess(make_cfg(f"--data_path={tmp_path}", "--skip_id_convert=1", "--strict=1"), progress=False)


def test_a_work_folder_it_did_not_write_is_left_alone(tmp_path, fixture_file):
    from src.utils.staged_dir import OutputError
    os.symlink(fixture_file, tmp_path / "train.txt")
    mine = tmp_path / ".mindrecord.work"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="holds files this project did not write"):
        preprocess(make_cfg(f"--data_path={tmp_path}"), progress=False)
    assert (mine / "notes.txt").read_text() == "mine"
