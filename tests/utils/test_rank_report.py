"""Per-rank result files: what a launcher reads to tell success from failure."""
import json
import os

import pytest

from src.utils import rank_report


def test_reports_are_written_whole_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv(rank_report.ENV, str(tmp_path / "ranks"))
    monkeypatch.setenv("RANK_ID", "2")
    rank_report.report("ok", global_step=7)                       # the rank from the launcher's RANK_ID
    rank_report.report("error", 0, message="train error: boom")
    assert sorted(os.listdir(tmp_path / "ranks")) == ["rank_0.json", "rank_2.json"]     # no temporary file left
    got = rank_report.read_reports(str(tmp_path / "ranks"), [0, 1, 2])
    assert got[2]["status"] == "ok" and got[2]["global_step"] == 7 and got[2]["pid"] == os.getpid()
    assert got[1] is None
    assert rank_report.summary(got) == ["rank 0 failed: train error: boom",
                                        "rank 1 never reported a result (it died or was killed before its end)"]
    monkeypatch.delenv(rank_report.ENV)
    rank_report.report("ok", 5)                                   # no launcher asked: nothing is written
    assert not (tmp_path / "ranks" / "rank_5.json").exists()


def test_check_command_exit_codes(tmp_path, capsys):
    d = tmp_path / "ranks"
    d.mkdir()
    for r in (3, 4):
        (d / f"rank_{r}.json").write_text(json.dumps({"rank": r, "status": "ok", "pid": 1}))
    with pytest.raises(SystemExit) as e:
        rank_report.main(["check", str(d), "2", "--first", "3"])   # node 1 of a 2-rank-per-node job
    assert e.value.code == 0
    with pytest.raises(SystemExit) as e:
        rank_report.main(["check", str(d), "3", "--first", "3"])
    assert e.value.code == 1 and "rank 5 never reported" in capsys.readouterr().out
