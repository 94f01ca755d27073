"""referralgraph.plot draws the data it is given."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pyarrow as pa
import pytest
import referralgraph as rg
from referralgraph import plot


@pytest.fixture(scope="module")
def program() -> tuple[rg.ReferralGraph, pa.Table]:
    r, e = rg.synthetic.program(users=20_000, seed=1)
    return rg.ReferralGraph.from_arrow(r), e


def test_pyramid_bars_are_the_users_and_buyers_per_depth(program) -> None:
    g, e = program
    p = g.pyramid(e)
    ax = plot.pyramid(p)
    users, buyers = ax.containers
    assert [b.get_width() for b in users] == p.column("users").to_pylist()
    assert [b.get_width() for b in buyers] == p.column("buyers").to_pylist()
    assert [b.get_y() + b.get_height() / 2 for b in users] == p.column("depth").to_pylist()
    plt.close("all")


def test_reach_distribution_counts_users_per_value(program) -> None:
    g, _ = program
    r = g.reach(max_depth=2)
    ax = plot.reach_distribution(r, column="level_1")
    (line,) = ax.get_lines()
    xs, ys = line.get_data()
    direct = [v for v in r.column("level_1").to_pylist() if v]
    assert list(xs) == sorted(set(direct))
    assert list(ys) == [direct.count(x) for x in xs]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    plt.close("all")


def test_channel_roi_bars(program) -> None:
    g, e = program
    spend = pa.table({"channel": ["ads", "store"], "spend": [1_000_000, 250_000]})
    c = g.channels(e, spend=spend)
    _fig, ax = plt.subplots()
    assert plot.channel_roi(c, ax=ax) is ax
    heights = [b.get_height() for b in ax.containers[0]]
    assert heights == [0.0 if v is None else v for v in c.column("roi").to_pylist()]
    assert [t.get_text() for t in ax.get_xticklabels()] == c.column("channel").to_pylist()
    ax2 = plot.channel_roi(g.channels(e))
    assert ax2.get_title() == "Channel viral multiplier"
    plt.close("all")
