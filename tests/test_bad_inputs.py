"""Every bad input of the README's table gets its one-line message and exit code, and nothing a user
had is changed: the table's own script, run with --check."""
import subprocess
import sys

from conftest import ROOT


def test_bad_input_table_holds():
    r = subprocess.run([sys.executable, "-m", "src.tools.bad_inputs", "--check"], cwd=ROOT, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and not line.startswith("| input")]
    assert len(rows) == 18 and all(line.split(" | ")[2] in ("1", "2") for line in rows), rows
    assert "Traceback" not in r.stdout
