"""The attribution benchmark runs end to end on a small program, its peers
agree with the engine on the ledger size, and --save writes the report."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benches" / "attribution.py"


def test_attribution_bench_runs_and_peers_agree(tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    args = ["--users", "3000", "--repeats", "1", "--peers", "polars", "numpy", "--save", str(out)]
    done = subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    report = out.read_text()
    assert report == done.stdout
    rows = dict(
        re.findall(r"^\| (referralgraph|polars|numpy)\b[^\n]*\| ([\d,]+) \|$", report, re.M)
    )
    assert set(rows) == {"referralgraph", "polars", "numpy"}
    assert len(set(rows.values())) == 1 and rows["referralgraph"] != "0"
    assert "floor: one independent random read" in report
    assert "session.attribute, 2 thread(s)" in report
