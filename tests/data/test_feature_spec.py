"""Feature specs: your own CSV/TSV through preprocessing. The values that come out are checked against a reference
computed here with Python's csv module; bad input is named (file, line, column) or counted by reason and column."""
import csv
import gzip
import json
import os
import shutil

import numpy as np
import pytest

from fixtures.datasets import read_split
from fixtures.paths import make_cfg
from src.data.feature_spec import FeatureSpecError, load_feature_spec
from src.data.preprocess import preprocess
from src.data.text_parser import InputFormatError

SPEC = """files: [clicks.csv]
format: csv
header: true
label: clicked
dense: [price]
categorical: [city, device]
ignore: [event_id, note]
"""
CITIES = ["Paris", "Lyon, FR", 'The "Big" Apple', "", "Zürich"]


def _fnv1a(data: bytes) -> int:
    """64-bit FNV-1a, written out here as the reference for the string keys."""
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) % (1 << 64)
    return h


def _rows(n: int, seed: int = 0):
    """n rows of (event_id, clicked, price, city, device, note) as strings; every kind of field the spec reads."""
    rng = np.random.default_rng(seed)
    labels = ["0", "1", "true", "false", "yes", "No"]
    for i in range(n):
        price = "" if i % 11 == 0 else f"{rng.normal(5, 4):.3f}"            # missing, negative and positive
        yield [f"e{i}", labels[i % len(labels)], price, CITIES[int(rng.integers(0, len(CITIES)))],
               f"dev{int(rng.integers(0, 3))}", 'said "hi", twice' if i % 5 == 0 else ""]


def _write(folder, rows, name="clicks.csv", header=("event_id", "clicked", "price", "city", "device", "note"),
           spec=SPEC, raw_lines=()):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
        for line in raw_lines:
            f.write(line + "\n")
    with open(os.path.join(folder, "spec.yaml"), "w") as f:
        f.write(spec)
    return os.path.join(folder, "spec.yaml")


def _run(folder, spec, *opts):
    return preprocess(make_cfg(f"--data_path={folder}", f"--feature_spec={spec}", "--workers=1", "--pack_size=16",
                               *opts), progress=False)


def test_csv_values_match_a_reference(tmp_path):
    """Header, RFC 4180 quoting (a separator and doubled quotes inside fields), missing values, negative and
    decimal numbers, string categories, labels as 0/1, true/false, yes/no: the test split (the last N // 7 lines, in
    file order) holds exactly the reference's labels and log(1 + max(x, 0)) values; equal strings share an id,
    different ones do not, and ids follow the training counts (most frequent first, 0 = missing)."""
    rows = list(_rows(140))
    spec = _write(tmp_path, rows)
    meta = _run(tmp_path, spec, "--threshold=1")
    assert meta["features"] == [{"name": "price", "kind": "dense"},
                                {"name": "city", "kind": "categorical", "rows": meta["table_sizes"][0]},
                                {"name": "device", "kind": "categorical", "rows": meta["table_sizes"][1]}]
    assert (meta["dense_dim"], meta["slot_dim"], meta["samples"]) == (1, 2, {"train": 120, "test": 20})
    assert meta["bad_lines"]["total"] == 0 and meta["feature_spec"]["ignore"] == ["event_id", "note"]
    ids, dense, label = read_split(meta["dataset_path"], "test")
    tail = rows[120:]
    want_label = [1.0 if r[1].lower() in ("1", "true", "yes") else 0.0 for r in tail]
    np.testing.assert_array_equal(label.ravel(), want_label)
    want_dense = np.log1p(np.maximum([float(r[2]) if r[2] else 0.0 for r in tail], 0).astype(np.float32))
    np.testing.assert_array_equal(dense.ravel(), want_dense)
    train_cities = [r[3] for r in rows[:120] if r[3]]
    order = sorted(set(train_cities), key=lambda c: (-train_cities.count(c), _fnv1a(c.encode())))
    want_ids = [0 if not r[3] else 2 + order.index(r[3]) if r[3] in order else 1 for r in tail]
    assert ids[:, 0].tolist() == want_ids and len(set(want_ids)) >= 4
    assert meta["table_sizes"] == [len(order) + 2, 5]                             # dev0..dev2 + missing + OOV


def test_workers_pieces_and_gzip_give_the_same_csv_dataset(tmp_path):
    """A CSV cut into many pieces (the header only in piece 0) by 1 or 2 workers, plain or gzip: the same dataset."""
    rows = list(_rows(600, seed=3))
    spec = _write(tmp_path / "a", rows)
    one = _run(tmp_path / "a", spec, "--chunk_bytes=2048")
    spec = _write(tmp_path / "b", rows)
    with open(tmp_path / "b" / "clicks.csv", "rb") as f, gzip.open(tmp_path / "b" / "clicks.csv.gz", "wb") as g:
        g.write(f.read())
    os.remove(tmp_path / "b" / "clicks.csv")
    two = _run(tmp_path / "b", spec, "--chunk_bytes=2048", "--workers=2")
    assert one["files"] == two["files"] and one["samples"] == two["samples"] == {"train": 515, "test": 85}


def test_bad_lines_are_counted_by_reason_and_column_and_strict_names_them(tmp_path):
    rows = list(_rows(60))
    raw = ["e90,1,3.5,Paris",                      # line 62: a field short
           "e91,0,2.0,Paris,dev1,unquoted, comma",  # line 63: an unquoted separator
           "e92,maybe,1.0,Lyon,dev0,",              # line 64: label
           "e93,1,abc,Lyon,dev0,",                  # line 65: dense
           ""]                                      # line 66: empty
    spec = _write(tmp_path, rows, raw_lines=raw)
    meta = _run(tmp_path, spec, "--max_bad_fraction=0.2")
    bad = meta["bad_lines"]
    assert bad["counts"] == {"field_count": 3, "label": 1, "dense": 1, "categorical": 0}
    assert bad["first_lines"]["field_count"] == [62, 63, 66] and bad["first_lines"]["label"] == [64]
    assert bad["columns"] == {"label": {"clicked": 1}, "dense": {"price": 1}}
    shutil.rmtree(meta["dataset_path"])
    with pytest.raises(InputFormatError, match=r"clicks.csv:62: wrong number of comma-separated fields: expected 6, "
                                               r"found 4 \(a field holding ',' must be quoted\)"):
        _run(tmp_path, spec, "--strict=1")
    _write(tmp_path, rows, raw_lines=raw[2:3])
    with pytest.raises(InputFormatError, match=r"clicks.csv:62: label is not 0/1, true/false or yes/no "
                                               r"\(column clicked\)"):
        _run(tmp_path, spec, "--strict=1")
    _write(tmp_path, rows, raw_lines=raw[3:4])
    with pytest.raises(InputFormatError, match=r"clicks.csv:62: dense value is not a number \(column price\)"):
        _run(tmp_path, spec, "--strict=1")
    assert not os.path.exists(tmp_path / "mindrecord")


def test_input_errors_name_file_line_and_column(tmp_path):
    rows = list(_rows(40))
    spec = _write(tmp_path, rows, raw_lines=['e9,1,2.0,"two\nlines",dev1,'])
    with pytest.raises(InputFormatError, match=r"clicks.csv:42: a quoted field holds a line break"):
        _run(tmp_path, spec)
    spec = _write(tmp_path, rows, spec=SPEC.replace("price]", "prize]"))
    with pytest.raises(FeatureSpecError, match=r"dense: column 'prize' is not in the header of clicks.csv \(did you "
                                               r"mean 'price'\?\)"):
        _run(tmp_path, spec)
    spec = _write(tmp_path, rows, spec=SPEC.replace("ignore: [event_id, note]", "ignore: [event_id]"))
    with pytest.raises(FeatureSpecError, match=r"clicks.csv has columns the spec does not name: \['note'\]"):
        _run(tmp_path, spec)
    spec = _write(tmp_path, rows, spec=SPEC.replace("split: tail", "") + "split: last_file\nfiles_: []\n")
    with pytest.raises(FeatureSpecError, match=r"unknown key 'files_' \(did you mean 'files'\?\)"):
        _run(tmp_path, spec)
    multi = SPEC.replace("ignore: [event_id, note]", "ignore: [event_id]\nmulti_hot:\n  - {name: note, %s}")
    for entry, message in (("sep: ';'", r"multi_hot\[0\]: unknown key 'sep' \(did you mean 'separator'\?\)"),
                           ("max_len: 0", r"multi_hot\[0\] \(note\): max_len: expected an integer in \[1, 4096\], "
                                          r"found 0"),
                           ("separator: ','", r"multi_hot\[0\] \(note\): separator: expected one character other than "
                                              r"the field delimiter ','"),
                           ("pooling: maen", r"pooling: 'maen' is not one of \['sum', 'mean'\] \(did you mean 'mean'")):
        spec = _write(tmp_path, rows, spec=multi % entry)
        with pytest.raises(FeatureSpecError, match=message):
            _run(tmp_path, spec)
    spec = _write(tmp_path, rows, spec=SPEC.replace("label: clicked", "label: {column: clicked, mni: 1}"))
    with pytest.raises(FeatureSpecError, match=r"label: .* unknown key 'mni' \(did you mean 'min'\?\)"):
        _run(tmp_path, spec)
    spec = _write(tmp_path, rows, spec=SPEC.replace("dense: [price]", "dense: [price, city]"))
    with pytest.raises(FeatureSpecError, match=r"column 'city' is named twice: under dense and categorical"):
        _run(tmp_path, spec)


def test_last_file_split_checks_every_header(tmp_path):
    rows = list(_rows(50))
    spec = _write(tmp_path, rows, name="a.csv", spec=SPEC.replace("[clicks.csv]", '["*.csv"]') + "split: last_file\n")
    _write(tmp_path, rows, name="b.csv", spec=open(spec).read())
    meta = _run(tmp_path, spec)
    assert meta["input_files"] == ["a.csv", "b.csv"] and meta["samples"] == {"train": 50, "test": 50}
    assert "b.csv (the last file) is held out" in meta["split"]
    _write(tmp_path, rows, name="b.csv", header=("event_id", "clicked", "price", "town", "device", "note"),
           spec=open(spec).read())
    with pytest.raises(InputFormatError, match=r"b.csv:1: the header differs from the first file's"):
        _run(tmp_path, spec)


def test_label_threshold_tsv_without_header_and_shipped_specs(tmp_path):
    """A TSV without a header, columns by index, label = rating >= 4; the shipped Criteo specs load."""
    lines = ["4\t3.5\tu1", "2\t1\tu2", "5\t\tu1", "3.9\t-2\t"] * 7
    (tmp_path / "r.tsv").write_text("\n".join(lines) + "\n")
    spec = tmp_path / "s.yaml"
    spec.write_text("files: [r.tsv]\nformat: tsv\nheader: false\nlabel: {column: 0, min: 4}\ndense: [1]\n"
                    "categorical: [2]\n")
    meta = _run(tmp_path, str(spec))
    ids, dense, label = read_split(meta["dataset_path"], "test")
    assert label.ravel().tolist() == [1, 0, 1, 0] and meta["features"][0]["name"] == "column_1"
    np.testing.assert_allclose(dense.ravel(), np.log1p([3.5, 1, 0, 0]).astype(np.float32))
    assert ids[3, 0] == 0 and ids[0, 0] == ids[2, 0] != ids[1, 0]
    kaggle = load_feature_spec("criteo_kaggle")
    assert (len(kaggle.dense), len(kaggle.categorical), kaggle.split) == (13, 26, "tail")
    assert load_feature_spec("criteo_terabyte").files == ("day_*",)
    meta_text = json.dumps(meta["feature_spec"])
    assert '"label": {"column": 0, "min": 4.0}' in meta_text


TAGS = ["a|b", "", "c||a", "a|b|c|d|e", "x,y|z", "b", "|", "d|d|a"]     # lists: empty ones, empty values, too long


def test_multi_hot_column_ids_pads_truncation_and_strict(tmp_path):
    """A `|`-separated column (one field quoted: it holds a comma) read as multi_hot with max_len 3: in hashing mode
    every sample's ids are 1 + FNV-1a(value) % (M - 1) for its non-empty values in order, cut to 3, then -1 pads;
    in vocabulary mode a value has one id wherever it stands in the list (one table per column). Lines whose list
    was cut are kept and counted (an error with strict=1, naming the line and column)."""
    header = ("event_id", "clicked", "price", "city", "device", "tags")
    rows = [[f"e{i}", str(i % 2), str(i), "Paris", "dev0", TAGS[i % len(TAGS)]] for i in range(70)]
    spec = _write(tmp_path, rows, header=header, spec=SPEC.replace(
        "ignore: [event_id, note]", 'ignore: [event_id]\nmulti_hot:\n  - {name: tags, max_len: 3, pooling: mean}'))
    meta = _run(tmp_path, spec, "--max_ind_range=1000", "--chunk_bytes=1024")                 # 2 pieces
    assert meta["ids_per_sample"] == 2 + 3 and meta["slot_dim"] == 3
    assert meta["features"][-1] == {"name": "tags", "kind": "multi_hot", "rows": 1000, "max_len": 3, "pooling": "mean"}
    assert meta["bad_lines"]["total"] == 0 and meta["bad_lines"]["truncated"] == {"tags": 9}   # rows 3, 11, .., 67

    def want(i):
        values = [v for v in TAGS[i % len(TAGS)].split("|") if v][:3]
        return [1 + _fnv1a(v.encode()) % 999 for v in values] + [-1] * (3 - len(values))
    for split in ("train", "test"):
        ids, dense, _ = read_split(meta["dataset_path"], split)
        rows_of = np.rint(np.expm1(dense[:, 0].astype(np.float64))).astype(int)        # price = the row number
        assert [list(r) for r in ids[:, 2:]] == [want(i) for i in rows_of]
    two = tmp_path / "two"                                   # 2 workers: the same dataset, byte for byte
    _write(two, rows, header=header, spec=open(spec).read())
    assert _run(two, two / "spec.yaml", "--max_ind_range=1000", "--workers=2", "--chunk_bytes=1024")["files"] == \
        meta["files"]
    shutil.rmtree(meta["dataset_path"])
    meta = _run(tmp_path, spec)                                                      # vocabulary mode
    ids, dense, _ = read_split(meta["dataset_path"], "train")
    rows_of = np.rint(np.expm1(dense[:, 0].astype(np.float64))).astype(int)
    first = {}
    for r, i in zip(ids[:, 2:], rows_of):
        for v, got in zip([v for v in TAGS[i % len(TAGS)].split("|") if v][:3], r):
            assert first.setdefault(v, got) == got                                   # one id per value
    assert len(first) == 6 and min(first.values()) >= 2 and meta["table_sizes"][-1] == 6 + 2    # a b c d z "x,y"
    shutil.rmtree(meta["dataset_path"])
    with pytest.raises(InputFormatError, match=r"clicks.csv:5: column tags holds 5 values, more than its max_len 3"):
        _run(tmp_path, spec, "--strict=1")
