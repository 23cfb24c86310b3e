"""The online server (serve.py), started on a free loopback port and stopped by the tests: rows by name and raw lines
get predict.py's probabilities (a multi-hot list as "a|b" or a JSON list alike), every kind of bad request is a 400
naming row and column and leaves the server and the other requests alone, concurrent clients get their own answers,
a full queue is a 503 at once, and SIGTERM lets the request in flight finish before exiting 0."""
import csv
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from fixtures.server import request, served
from src.inference.bundle import Bundle
from src.inference.scoring import score_files

pytestmark = pytest.mark.slow


def _predicted(bundle, raw, tmp_path):
    score_files(Bundle(bundle), raw, str(tmp_path / "p.csv"), workers=1)
    return pd.read_csv(tmp_path / "p.csv")["probability"].to_numpy()


def _criteo_rows(lines):
    names = ["label"] + [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)]
    rows = []
    for line in lines:
        f = dict(zip(names, line.split("\t")))
        rows.append({k: (None if v == "" else int(v) if k.startswith("I") else v) for k, v in f.items()
                     if k != "label"})
    return rows


@pytest.fixture(scope="module")
def criteo_server(bundles, tmp_path_factory):
    with served(bundles["criteo"][0], tmp_path_factory.mktemp("serve"), "--max_body_bytes=200000",
                "--max_wait_ms=5") as s:
        yield s


def test_rows_and_lines_get_predicts_probabilities(bundles, criteo_server, tmp_path):
    raw = bundles["criteo"][3]
    want = _predicted(bundles["criteo"][0], raw, tmp_path)
    lines = open(raw).read().splitlines()
    status, got = request(criteo_server, "/predict", {"lines": lines})
    assert status == 200 and np.max(np.abs(np.array(got["probabilities"]) - want)) <= 1e-6
    status, got = request(criteo_server, "/predict", {"lines": [line.split("\t", 1)[1] for line in lines[:5]]})
    assert status == 200 and np.max(np.abs(np.array(got["probabilities"]) - want[:5])) <= 1e-6   # no label field
    status, got = request(criteo_server, "/predict", {"rows": _criteo_rows(lines)})
    assert status == 200 and np.max(np.abs(np.array(got["probabilities"]) - want)) <= 1e-6
    assert request(criteo_server, "/predict", {"rows": []}) == (200, {"probabilities": []})


def test_health_and_metadata(bundles, criteo_server):
    assert request(criteo_server, "/health", None) == (200, {"status": "ok"})
    status, meta = request(criteo_server, "/metadata", None)
    manifest = json.load(open(f"{bundles['criteo'][0]}/manifest.json"))
    assert status == 200 and meta["runtime"] == "onnxruntime" and len(meta["features"]) == 39
    assert meta["model_sha256"] == manifest["files"]["model.onnx"]["sha256"] and meta["command"] == manifest["command"]


BAD = [
    (b"{not json", "the body is not JSON"),
    ({"items": []}, 'expected {"rows": [...]} or {"lines": [...]}, got keys [\'items\']'),
    ({"rows": 5}, "rows: expected a list, got int"),
    ({"rows": [3]}, "rows[0]: expected an object of column: value, got int"),
    ({"rows": "ROW", "bool": True}, "rows[0] column 'I1': expected a string or a number, got true"),
    ({"rows": "ROW", "I99": 1}, "rows[0]: unknown column 'I99'"),
    ({"rows": "ROW", "drop": "C26"}, "rows[0]: column 'C26' is missing (send null for a missing value)"),
    ({"rows": "ROW", "I3": "abc"}, "rows[1]: dense value is not an integer (column I3)"),
    ({"rows": "ROW", "C2": "zz"}, "rows[1]: categorical value is not hexadecimal (at most 8 digits) (column C2)"),
    ({"lines": ["1\t2\t3"]}, "lines[0] has 3 fields; the model was trained on 40 (give 40, or 39 without the label "
                             "column)"),
    ({"lines": "LINES", "cut": 1}, "lines[1]: wrong number of tab-separated fields: expected 40, found 20"),
    ({"lines": ["a\nb"]}, "lines[0]: holds a line break; send one line per item"),
    ({"lines": [5]}, "lines[0]: expected a string, got int"),
    (b"[" + b"1," * 150000 + b"1]", "is larger than max_body_bytes=200,000"),
]


def _bad_body(spec, lines):
    """The request of one BAD entry (ROW/LINES: good rows or lines changed as the entry says)."""
    if isinstance(spec, bytes):
        return None, spec
    spec = dict(spec)
    if spec.get("rows") == "ROW":
        rows = _criteo_rows(lines[:3])
        if "bool" in spec:
            rows[0]["I1"] = True
        if "I99" in spec:
            rows[0]["I99"] = 1
        if "drop" in spec:
            del rows[0][spec["drop"]]
        for k in ("I3", "C2"):
            if k in spec:
                rows[1][k] = spec[k]
        return {"rows": rows}, None
    if spec.get("lines") == "LINES":
        cut = lines[:3]
        cut[1] = "\t".join(cut[1].split("\t")[:20])
        return {"lines": cut}, None
    return spec, None


@pytest.mark.parametrize("bad,message", BAD, ids=[m[:40] for _, m in BAD])
def test_a_bad_request_is_a_400_naming_the_problem(bundles, criteo_server, bad, message):
    lines = open(bundles["criteo"][3]).read().splitlines()
    body, raw = _bad_body(bad, lines)
    status, answer = request(criteo_server, "/predict", body, raw=raw)
    assert status == 400 and message in answer["error"], answer
    assert request(criteo_server, "/health", None)[0] == 200


def test_concurrent_clients_bad_ones_among_them_get_their_own_answers(bundles, criteo_server, tmp_path):
    raw = bundles["criteo"][3]
    want = _predicted(bundles["criteo"][0], raw, tmp_path)
    lines = open(raw).read().splitlines()

    def client(i):
        lo = (7 * i) % (len(lines) - 20)
        if i % 5 == 4:                                   # every fifth client sends a bad row beside the others
            return request(criteo_server, "/predict", {"lines": ["1\tx"] + lines[lo:lo + 3]})[0] == 400
        status, got = request(criteo_server, "/predict", {"lines": lines[lo:lo + 1 + i % 17]})
        return status == 200 and np.max(np.abs(np.array(got["probabilities"]) - want[lo:lo + 1 + i % 17])) <= 1e-6
    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(client, range(96)))


def test_multi_hot_as_a_list_or_its_separator(bundles, tmp_path):
    folder, _, _, raw = bundles["multihot"]
    want = _predicted(folder, raw, tmp_path)
    records = list(csv.DictReader(open(raw, encoding="utf-8")))
    as_text = [{k: v for k, v in r.items() if k not in ("timestamp", "rating")} for r in records]
    as_list = [dict(r, genres=[g for g in r["genres"].split("|") if g]) for r in as_text]
    with served(folder, tmp_path / "log") as s:
        for rows in (as_text, as_list):
            status, got = request(s, "/predict", {"rows": rows})
            assert status == 200 and np.max(np.abs(np.array(got["probabilities"]) - want)) <= 1e-6
        lines = open(raw, encoding="utf-8").read().splitlines()[1:]
        status, got = request(s, "/predict", {"lines": lines})
        assert status == 200 and np.max(np.abs(np.array(got["probabilities"]) - want)) <= 1e-6


def test_a_full_queue_is_a_503_at_once_and_sigterm_drains(bundles, tmp_path):
    lines = open(bundles["criteo"][3]).read().splitlines()
    with served(bundles["criteo"][0], tmp_path / "log", "--max_queue_rows=50", "--max_wait_ms=1500",
                "--max_batch_rows=100000") as s:
        start = time.time()
        status, answer = request(s, "/predict", {"lines": lines[:60]})
        assert status == 503 and "max_queue_rows=50" in answer["error"] and time.time() - start < 1.0
        result = {}
        t = threading.Thread(target=lambda: result.update(answer=request(s, "/predict", {"lines": lines[:10]})))
        t.start()
        time.sleep(0.5)                          # the request waits in its micro-batch (max_wait_ms 1500)
        code = s.stop()
        t.join(30)
        assert code == 0 and result["answer"][0] == 200 and len(result["answer"][1]["probabilities"]) == 10
        assert "served 10 rows in 1 batches; stopped" in open(s.out).read()
