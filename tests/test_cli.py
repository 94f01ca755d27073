"""The command line, driven on files written by the synthetic generator
(a parquet file, a folder of parquet parts, CSV, Arrow IPC), its outputs
checked against the Python API."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
import referralgraph as rg
from referralgraph.cli import EXIT_INPUT, EXIT_INTERRUPTED, EXIT_USAGE, main

POLICY = """
rates = [0.10, 0.05, 0.02]
window = "365d"
qualify = "purchased"
cap_per_beneficiary = 50000
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    referrals, events = rg.synthetic.program(20_000, seed=4)
    pq.write_table(referrals, d / "referrals.parquet")
    parts = d / "events"
    parts.mkdir()
    step = events.num_rows // 3 + 1
    for i in range(3):
        pq.write_table(events.slice(i * step, step), parts / f"part-{i}.parquet")
    pacsv.write_csv(events, d / "events.csv")
    feather.write_feather(referrals, d / "referrals.arrow")
    (d / "policy.toml").write_text(POLICY)
    edges = rg.synthetic.social(5_000, avg_degree=6, seed=1)
    pacsv.write_csv(edges.rename_columns(["followee", "follower"]), d / "follows.csv")
    pq.write_table(
        pa.table({"channel": ["ads", "store"], "spend": [100_000, 50_000]}), d / "spend.parquet"
    )
    return {
        "dir": d,
        "referrals": d / "referrals.parquet",
        "referrals_ipc": d / "referrals.arrow",
        "parts": parts,
        "csv": d / "events.csv",
        "policy": d / "policy.toml",
        "follows": d / "follows.csv",
        "spend": d / "spend.parquet",
    }


@pytest.fixture(scope="module")
def api(files: dict[str, Path]) -> tuple[rg.ReferralGraph, pa.Table]:
    return (
        rg.ReferralGraph.from_arrow(pq.read_table(files["referrals"])),
        pq.read_table(files["parts"]),
    )


def run(*args: str | Path) -> int:
    return main(["--quiet", *map(str, args)])


def attribute(referrals: Path, events: Path, out: Path, *extra: str | Path) -> int:
    return run("attribute", "-r", referrals, "-e", events, "-o", out, *extra)


def test_attribute_from_a_folder_of_parts_matches_the_api(files, api, tmp_path):
    out = tmp_path / "ledger.parquet"
    assert attribute(files["referrals"], files["parts"], out, "--policy", files["policy"]) == 0
    g, events = api
    want = g.attribute(events, rg.Policy.from_toml(files["policy"]))
    assert pq.read_table(out).equals(want.ledger)
    assert pq.read_table(tmp_path / "ledger.totals.parquet").equals(want.totals)
    assert not (tmp_path / "ledger.issues.parquet").exists()


def test_attribute_from_csv_and_ipc_with_policy_flags(files, api, tmp_path):
    out = tmp_path / "l.parquet"
    args = [
        "-r",
        files["referrals_ipc"],
        "-e",
        files["csv"],
        "--rates",
        "0.2,0.1",
        "--qualify",
        "min_spend:1000",
        "--compression",
    ]
    assert run("attribute", *args, "-o", out) == 0
    g, _ = api
    csv_events = pacsv.read_csv(files["csv"])
    want = g.attribute(
        csv_events, rg.Policy(rates=[0.2, 0.1], qualify=rg.MinSpend(1000), compression=True)
    )
    got = pq.read_table(out)
    assert got.num_rows == want.ledger.num_rows > 0
    assert got.column("credit").to_pylist() == want.ledger.column("credit").to_pylist()


def test_on_invalid_drop_writes_the_issues_next_to_the_output(files, tmp_path):
    events = pq.read_table(files["parts"]).slice(0, 100)
    amounts = events.column("amount").to_pylist()
    amounts[3] = None
    bad = events.set_column(
        events.schema.get_field_index("amount"), "amount", pa.array(amounts, pa.int64())
    )
    pq.write_table(bad, tmp_path / "bad.parquet")
    out = tmp_path / "ledger.parquet"
    assert (
        run("attribute", "-r", files["referrals"], "-e", tmp_path / "bad.parquet", "-o", out)
        == EXIT_INPUT
    )
    assert not out.exists()
    assert (
        run(
            "attribute",
            "-r",
            files["referrals"],
            "-e",
            tmp_path / "bad.parquet",
            "-o",
            out,
            "--on-invalid",
            "drop",
        )
        == 0
    )
    issues = pq.read_table(tmp_path / "ledger.issues.parquet")
    assert issues.column("row").to_pylist() == [3]
    assert issues.column("kind").to_pylist() == ["null_amount"]
    assert issues.column("table").to_pylist() == ["events"]


def test_on_invalid_drop_on_the_referrals_of_every_forest_command(files, tmp_path):
    referrals = pq.read_table(files["referrals"]).slice(0, 1000)
    refs = referrals.column("referrer_id").to_pylist()
    refs[5] = referrals.column("user_id")[5].as_py()  # a self-referral
    bad = referrals.set_column(
        referrals.schema.get_field_index("referrer_id"), "referrer_id", pa.array(refs, pa.int64())
    )
    pq.write_table(bad, tmp_path / "bad.parquet")
    events = files["parts"]
    commands = {
        "reach": ("reach", "-r", tmp_path / "bad.parquet", "-o", tmp_path / "reach.parquet"),
        "scores": (
            "scores",
            "-r",
            tmp_path / "bad.parquet",
            "-e",
            events,
            "-o",
            tmp_path / "scores.parquet",
        ),
        "report": (
            "report",
            "-r",
            tmp_path / "bad.parquet",
            "-e",
            events,
            "--policy",
            files["policy"],
            "-o",
            tmp_path / "report.html",
        ),
    }
    for name, args in commands.items():
        assert run(*args) == EXIT_INPUT, name
        assert run(*args, "--on-invalid", "drop") == 0, name
        issues = pq.read_table(tmp_path / f"{name}.issues.parquet")
        assert issues.column("row").to_pylist() == [5], name
        assert issues.column("table").to_pylist() == ["referrals"], name
    assert pq.read_table(tmp_path / "reach.parquet").num_rows == 1000


def test_reach_scores_match_the_api(files, api, tmp_path):
    g, events = api
    assert (
        run("reach", "-r", files["referrals"], "--max-depth", "4", "-o", tmp_path / "reach.parquet")
        == 0
    )
    assert pq.read_table(tmp_path / "reach.parquet").equals(g.reach(max_depth=4))
    assert (
        run("scores", "-r", files["referrals"], "-e", files["parts"], "-o", tmp_path / "s.parquet")
        == 0
    )
    assert pq.read_table(tmp_path / "s.parquet").equals(g.scores(events))


def test_social_reach_and_seeds_on_a_csv_export(files, tmp_path):
    edges = pacsv.read_csv(files["follows"])
    sg = rg.SocialGraph.from_arrow(edges, src="followee", dst="follower", p="weighted_cascade")
    common = ["--edges", files["follows"], "--src", "followee", "--dst", "follower"]
    assert run("reach", *common, "-k", "2", "-o", tmp_path / "r.parquet") == 0
    assert pq.read_table(tmp_path / "r.parquet").column("reach_2") == sg.reach(k=2).column(
        "reach_2"
    )
    assert (
        run("seeds", *common, "-k", "5", "--max-hops", "2", "-o", tmp_path / "seeds.parquet") == 0
    )
    got = pq.read_table(tmp_path / "seeds.parquet")
    want = sg.seeds(5, max_hops=2)
    assert got.column("user_id") == want.column("user_id")
    assert rg.seeds_stats(got)["rr_sets"] == rg.seeds_stats(want)["rr_sets"]
    # Seeds on the referral forest, restricted to candidates.
    pq.write_table(pa.table({"user_id": got.column("user_id")}), tmp_path / "c.parquet")
    assert (
        run(
            "seeds",
            "-r",
            files["referrals"],
            "-p",
            "0.3",
            "-k",
            "3",
            "--candidates",
            files["referrals"],
            "-o",
            tmp_path / "f.parquet",
        )
        == 0
    )
    assert pq.read_table(tmp_path / "f.parquet").num_rows == 3


class _Page(HTMLParser):
    """Collects figures (their data-value marks) and tables (cell values) by id."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, list[str]] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self._figure: str | None = None
        self._table: str | None = None
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("script", "link", "img") or (a.get("src") or "").startswith("http"):
            self.external.append(tag)
        if tag == "figure":
            self._figure = a["id"]
            self.figures[self._figure] = []
        elif tag in ("rect", "circle") and self._figure and "data-value" in a:
            self.figures[self._figure].append(a["data-value"] or "")
        elif tag == "table":
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag == "td" and self._table:
            self.tables[self._table][-1].append(a["data-value"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._figure = None
        elif tag == "table":
            self._table = None


def test_report_is_one_self_contained_page_with_the_right_numbers(files, api, tmp_path):
    out = tmp_path / "report.html"
    args = [
        "-r",
        files["referrals"],
        "-e",
        files["parts"],
        "--policy",
        files["policy"],
        "--spend",
        files["spend"],
    ]
    assert run("report", *args, "-o", out) == 0
    page = _Page()
    page.feed(out.read_text())
    assert page.external == []  # nothing to fetch: viewable offline
    assert set(page.figures) == {"pyramid-chart", "reach-chart", "channels-chart", "levels-chart"}
    assert {"metrics", "pyramid", "reach", "channels", "levels", "top-beneficiaries"} <= set(
        page.tables
    )
    g, events = api
    pyr = g.pyramid(events)
    assert [float(v) for v in page.figures["pyramid-chart"]] == [
        float(x) for x in pyr.column("users").to_pylist()
    ]
    assert [int(r[1]) for r in page.tables["pyramid"] if r] == pyr.column("users").to_pylist()
    result = g.attribute(events, rg.Policy.from_toml(files["policy"]))
    top = [r for r in page.tables["top-beneficiaries"] if r]
    assert [int(r[0]) for r in top] == result.totals.column("beneficiary_id").to_pylist()[:20]
    assert [int(r[1]) for r in top] == result.totals.column("credit").to_pylist()[:20]
    levels = [float(v) for v in page.figures["levels-chart"]]
    assert levels == [
        float(pa.compute.sum(result.totals.column(f"credit_level_{k}")).as_py()) for k in (1, 2, 3)
    ]
    ch = {r[0]: r for r in page.tables["channels"] if r}
    want = {
        r["channel"]: r for r in g.channels(events, spend=pq.read_table(files["spend"])).to_pylist()
    }
    assert float(ch["ads"][-1]) == pytest.approx(want["ads"]["roi"])
    metrics = {r[0]: r[1] for r in page.tables["metrics"] if r}
    assert float(metrics["k_factor"]) == pytest.approx(g.metrics(events)["k_factor"])
    desc = g.reach(max_depth=3).column("descendants").to_numpy()
    assert sum(int(v) for v in page.figures["reach-chart"]) == int((desc > 0).sum())


def test_errors_are_one_line_with_distinct_exit_codes(files, tmp_path, capsys):
    out = tmp_path / "x.parquet"
    assert (
        run("attribute", "-r", tmp_path / "missing.parquet", "-e", files["parts"], "-o", out)
        == EXIT_INPUT
    )
    err = capsys.readouterr().err
    assert err.startswith("referralgraph: error: FileNotFoundError") and err.count("\n") == 1
    (tmp_path / "bad.toml").write_text("rates = [0.9, 0.5]\n")
    assert (
        attribute(files["referrals"], files["parts"], out, "--policy", tmp_path / "bad.toml")
        == EXIT_INPUT
    )
    assert "PolicyError: rates sum to" in capsys.readouterr().err
    assert (
        run("attribute", "-r", files["referrals"], "-e", files["parts"], "-o", out, "--rates", "x")
        == EXIT_INPUT
    )
    assert run("attribute", "--bogus") == EXIT_USAGE
    assert run("reach", "-o", out) == EXIT_USAGE  # neither --referrals nor --edges
    assert (
        run("attribute", "-r", files["referrals"], "-e", files["dir"] / "x.unknown", "-o", out)
        == EXIT_INPUT
    )
    assert not out.exists()


def test_help_lists_every_command_with_examples():
    r = subprocess.run(
        [sys.executable, "-m", "referralgraph", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for cmd in ("demo", "attribute", "reach", "scores", "seeds", "report"):
        assert re.search(rf"\b{cmd}\b", r.stdout), cmd
    assert "Examples" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "referralgraph", "attribute", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--on-invalid" in r.stdout and "Example" in r.stdout


def test_log_json_writes_one_json_object_per_step(files, tmp_path):
    env = {**os.environ, "COLUMNS": "120"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "referralgraph",
            "--log-json",
            "--threads",
            "1",
            "reach",
            "-r",
            str(files["referrals"]),
            "-o",
            str(tmp_path / "r.parquet"),
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    records = [json.loads(line) for line in r.stderr.splitlines()]
    assert [x["message"] for x in records][-1] == "reach"
    assert all("seconds" in x for x in records)


def test_ctrl_c_leaves_no_partial_output(files, tmp_path):
    """SIGINT during a long IMM run: exit code 130 and no output file."""
    edges = rg.synthetic.social(300_000, seed=3)
    pq.write_table(edges, tmp_path / "e.parquet")
    out = tmp_path / "seeds.parquet"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "referralgraph",
            "seeds",
            "--edges",
            str(tmp_path / "e.parquet"),
            "-p",
            "0.01",
            "-k",
            "100",
            "--epsilon",
            "0.05",
            "-o",
            str(out),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.5)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == EXIT_INTERRUPTED, err
    assert "interrupted" in err
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


def test_demo_prints_every_section_and_writes_the_report(tmp_path, capsys):
    report = tmp_path / "demo.html"
    assert run("demo", "--users", "20000", "--seed", "2", "--report", report) == 0
    out = capsys.readouterr().out
    for section in (
        "attribution:",
        "reach (K=3):",
        "scores:",
        "core fan",
        "channels",
        "K-factor",
        "seeds (IMM",
        "report:",
    ):
        assert section in out
    assert "graph:             20,000 users" in out
    assert report.exists() and "<svg" in report.read_text()


@pytest.mark.skipif(rg.available_memory() is None, reason="the system does not say")
def test_hll_reach_too_large_for_memory_is_refused_with_a_message(tmp_path, capsys):
    n = (rg.available_memory() or 0) // (
        2 << 16
    ) + 1000  # 2 * users * 2^16 bytes: more than there is
    users = pa.array(range(n), pa.int64())
    pq.write_table(
        pa.table({"src": users, "dst": pa.array([(i + 1) % n for i in range(n)])}),
        tmp_path / "e.parquet",
    )
    args = ["--edges", tmp_path / "e.parquet", "-k", "2", "--method", "hll", "--precision", "16"]
    assert run("reach", *args, "-o", tmp_path / "r.parquet") == EXIT_INPUT
    err = capsys.readouterr().err
    assert "MemoryError: HyperLogLog reach at precision 16 needs" in err
    assert not (tmp_path / "r.parquet").exists()
