"""Every bad input of docs/reliability.md's table gets its one-line message and exit code, with no traceback on
stderr (where the messages are), nothing a user had is changed, and the documented table is exactly the tool's."""
import pytest

from fixtures.commands import run_py

pytestmark = pytest.mark.slow


def test_bad_input_table_holds():
    r = run_py("-m", "src.tools.bad_inputs", "--check", timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and not line.startswith("| input")]
    assert len(rows) == 28 and all(line.split(" | ")[2] in ("1", "2") for line in rows), rows
