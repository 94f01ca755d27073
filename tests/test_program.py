"""Reach, scores, pyramid, channels and metrics: the definitions in
referralgraph.program, one test each, then properties against the
pure-Python reference and against networkx / igraph."""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from typing import Any

import igraph
import networkx as nx
import polars as pl
import pyarrow as pa
import pytest
import referralgraph as rg
from _threads import outputs_per_thread_count
from hypothesis import given
from hypothesis import strategies as st
from referralgraph.testing import reference
from referralgraph.testing import strategies as rgst

T0 = dt.datetime(2024, 1, 1)

# 1 -> 2, 3; 2 -> 4; 4 -> 5; 6 alone (channel "store"); 1's channel "ads".
TREE = pa.table(
    {
        "user_id": [1, 2, 3, 4, 5, 6],
        "referrer_id": [None, 1, 1, 2, 4, None],
        "joined_at": pa.array(
            [T0 + dt.timedelta(days=d) for d in (0, 1, 3, 2, 10, 5)], pa.timestamp("s")
        ),
        "channel": ["ads", None, None, None, None, "store"],
    }
)


def tree() -> rg.ReferralGraph:
    return rg.ReferralGraph.from_arrow(TREE)


def by_user(table: pa.Table) -> dict[Any, dict[str, Any]]:
    return {r.pop("user_id"): r for r in table.to_pylist()}


# --- reach ----------------------------------------------------------------------


def test_reach_counts_levels_descendants_height_and_root() -> None:
    r = by_user(tree().reach(max_depth=3))
    assert r[1] == {
        "depth": 0,
        "root_id": 1,
        "direct": 2,
        "level_1": 2,
        "level_2": 1,
        "level_3": 1,
        "descendants": 4,
        "height": 3,
    }
    assert (r[5]["depth"], r[5]["root_id"], r[5]["descendants"], r[5]["height"]) == (3, 1, 0, 0)
    assert r[6]["root_id"] == 6
    t = tree().reach(max_depth=0)
    assert t.column_names == ["user_id", "depth", "root_id", "direct", "descendants", "height"]
    assert t.schema.field("descendants").type == pa.uint32()


def test_reach_rejects_a_negative_depth() -> None:
    with pytest.raises(ValueError, match="max_depth"):
        tree().reach(max_depth=-1)


def test_reach_on_a_million_deep_chain() -> None:
    n = 1_000_000
    g = rg.ReferralGraph.from_arrow(
        pa.table({"user_id": range(n), "referrer_id": [None, *range(n - 1)]})
    )
    r = g.reach(max_depth=2)
    first = r.slice(0, 1).to_pylist()[0]
    assert (first["descendants"], first["height"], first["level_2"]) == (n - 1, n - 1, 1)
    assert r.column("root_id").to_pylist()[-1] == 0


@given(rgst.referral_tables(), st.integers(0, 4))
def test_reach_matches_the_reference(referrals: pa.Table, k: int) -> None:
    got = by_user(rg.ReferralGraph.from_arrow(referrals).reach(max_depth=k))
    assert got == reference.reach(referrals.to_pylist(), k)


@given(rgst.referral_tables(id_type="int", max_users=40), st.integers(1, 4))
def test_reach_matches_networkx_and_igraph(referrals: pa.Table, k: int) -> None:
    g = rg.ReferralGraph.from_arrow(referrals)
    got = by_user(g.reach(max_depth=k))
    edges = [
        (r["referrer_id"], r["user_id"])
        for r in referrals.to_pylist()
        if r["referrer_id"] is not None
    ]
    d = nx.DiGraph()
    d.add_nodes_from(got)
    d.add_edges_from(edges)
    ids = list(got)
    ig = igraph.Graph(
        n=len(ids), edges=[(ids.index(a), ids.index(b)) for a, b in edges], directed=True
    )
    within = [ig.neighborhood_size(order=j, mode="out") for j in range(k + 1)]
    for i, u in enumerate(ids):
        dist = nx.single_source_shortest_path_length(d, u)
        assert got[u]["descendants"] == len(nx.descendants(d, u))
        assert got[u]["height"] == max(dist.values())
        for j in range(1, k + 1):
            exactly = sum(1 for x in dist.values() if x == j)
            assert got[u][f"level_{j}"] == exactly == within[j][i] - within[j - 1][i]


# --- scores ---------------------------------------------------------------------


EVENTS = pa.table(
    {
        "user_id": [2, 2, 2, 4, 5, 6, 99],
        "amount": [1000, 500, -200, 300, 50, 7, 10_000],
    }
)


def test_scores_columns_and_definitions() -> None:
    s = by_user(tree().scores(EVENTS, max_depth=2))
    assert s[2] == {
        "own_orders": 2,
        "own_amount": 1300,
        "repeat_buyer": True,
        "direct": 1,
        "direct_converted": 1,
        "conversion_rate": 1.0,
        "descendants": 2,
        "downstream_amount": 350,
        "score": 1300 + 300 + 0.5 * 50,
        "tier": "core",
    }
    # 1 bought nothing: dormant, but its downstream counts (2 levels).
    assert s[1]["own_orders"] == 0 and s[1]["tier"] == "dormant"
    assert s[1]["downstream_amount"] == 1300 + 0 + 300
    assert s[1]["conversion_rate"] == 0.5
    assert s[3]["conversion_rate"] is None
    assert s[4]["score"] == 300 + 50
    # Buyers 2, 4, 5, 6: ceil(1% of 4) = 1 core, ceil(10% of 4) = 1 in the top two.
    assert [s[u]["tier"] for u in (4, 5, 6)] == ["active"] * 3


def test_scores_weights_and_tiers_are_configurable() -> None:
    s = by_user(tree().scores(EVENTS, max_depth=2, weights=[0.0, 0.0], tiers=(0.0, 0.5)))
    assert s[2]["score"] == 1300
    assert [s[u]["tier"] for u in (2, 4, 5, 6)] == ["advocate", "advocate", "active", "active"]
    with pytest.raises(ValueError, match="weights"):
        tree().scores(EVENTS, max_depth=2, weights=[1.0])
    with pytest.raises(ValueError, match="weights"):
        tree().scores(EVENTS, max_depth=1, weights=[math.nan])
    with pytest.raises(ValueError, match="tiers"):
        tree().scores(EVENTS, tiers=(0.6, 0.6))


def test_scores_tie_break_by_id() -> None:
    g = rg.ReferralGraph.from_arrow(pa.table({"user_id": [5, 3, 9], "referrer_id": [None] * 3}))
    s = by_user(
        g.scores(pa.table({"user_id": [9, 5, 3], "amount": [10, 10, 10]}), tiers=(0.3, 0.3))
    )
    # ceil(30% of 3) = 1 core: the smallest id among equal scores.
    assert {u: s[u]["tier"] for u in (3, 5, 9)} == {3: "core", 5: "advocate", 9: "active"}


def test_scores_keep_the_amount_type() -> None:
    ev = pa.table(
        {
            "user_id": [2, 4],
            "amount": pa.array([Decimal("10.25"), Decimal("1.50")], pa.decimal128(9, 2)),
        }
    )
    t = tree().scores(ev, max_depth=1)
    assert t.schema.field("own_amount").type == pa.decimal128(9, 2)
    s = by_user(t)
    assert s[2]["downstream_amount"] == Decimal("1.50")
    assert s[2]["score"] == pytest.approx(11.75)
    f = by_user(tree().scores(pa.table({"user_id": [4], "amount": [2.5]}), max_depth=1))
    assert f[2]["downstream_amount"] == 2.5


def test_scores_errors_name_column_and_row() -> None:
    with pytest.raises(rg.InvalidInputError, match=r"amount.*row 1"):
        tree().scores(pa.table({"user_id": [2, 4], "amount": [1.0, math.nan]}))
    with pytest.raises(rg.SchemaError, match="user_id"):
        tree().scores(pa.table({"user_id": ["2"], "amount": [1]}))
    with pytest.raises(rg.SchemaError, match="amount"):
        tree().scores(pa.table({"user_id": [2]}))
    big = pa.table({"user_id": [2, 2], "amount": [2**62, 2**62]})
    with pytest.raises(rg.ReferralGraphError, match="does not fit"):
        tree().scores(big)


def test_scores_accept_polars_and_renamed_columns() -> None:
    ev = pl.DataFrame({"buyer": [2, 4], "cents": [100, 200]})
    s = by_user(tree().scores(ev, user_id="buyer", amount="cents", max_depth=1))
    assert s[2]["own_amount"] == 100 and s[2]["downstream_amount"] == 200


def _unscaled(evs: list[dict[str, Any]], scale: int) -> list[dict[str, Any]]:
    if scale:
        for e in evs:
            e["amount"] = int(e["amount"].scaleb(scale))
    return evs


@given(st.data(), st.sampled_from(["int64", "decimal128", "float64"]), st.integers(0, 3))
def test_scores_match_the_reference(data: st.DataObject, amount_type: str, k: int) -> None:
    referrals = data.draw(rgst.referral_tables())
    events = data.draw(rgst.events(referrals, amount_type=amount_type, with_ts=False))
    tiers = data.draw(st.sampled_from([(0.01, 0.09), (0.2, 0.3), (0.0, 1.0)]))
    scale = 2 if amount_type == "decimal128" else 0
    got = by_user(rg.ReferralGraph.from_arrow(referrals).scores(events, max_depth=k, tiers=tiers))
    want = reference.scores(
        referrals.to_pylist(),
        _unscaled(events.to_pylist(), scale),
        max_depth=k,
        tiers=tiers,
        scale=scale,
    )
    assert got.keys() == want.keys()
    for u, w in want.items():
        g = got[u]
        if scale:
            for c in ("own_amount", "downstream_amount"):
                g[c] = int(g[c].scaleb(scale))
        if amount_type == "float64":
            # Float sums in another order: equal to rounding; tiers may
            # then differ only between users whose scores are that close.
            for c in ("own_amount", "downstream_amount", "score"):
                assert g.pop(c) == pytest.approx(w.pop(c), rel=1e-9, abs=1e-9)
            g.pop("tier"), w.pop("tier")
        else:
            assert g.pop("score") == pytest.approx(w.pop("score"), rel=1e-12)
        assert g == w, u


# --- pyramid, channels, metrics --------------------------------------------------


def test_pyramid_with_and_without_events() -> None:
    p = tree().pyramid(EVENTS)
    assert p.to_pylist() == [
        {"depth": 0, "users": 2, "buyers": 1, "amount": 7, "attenuation": None},
        {"depth": 1, "users": 2, "buyers": 1, "amount": 1300, "attenuation": 1.0},
        {"depth": 2, "users": 1, "buyers": 1, "amount": 300, "attenuation": 2.0},
        {"depth": 3, "users": 1, "buyers": 1, "amount": 50, "attenuation": 1.0},
    ]
    assert tree().pyramid().column_names == ["depth", "users", "attenuation"]


def test_channels_roll_users_up_to_their_roots_channel_and_roi() -> None:
    spend = pa.table({"channel": ["ads", "ads", "store", "tv"], "spend": [100, 40, 7, 5]})
    c = tree().channels(EVENTS, spend=spend).to_pylist()
    assert [r["channel"] for r in c] == ["ads", "store"]
    ads = c[0]
    assert (ads["roots"], ads["users"], ads["buyers"]) == (1, 5, 3)
    assert (ads["amount_roots"], ads["amount_descendants"], ads["amount"]) == (0, 1650, 1650)
    assert ads["viral_multiplier"] == 5.0
    assert ads["spend"] == 140.0 and ads["roi"] == pytest.approx(1650 / 140)
    assert c[1]["roi"] == 1.0
    # No channel column: one row with a null channel.
    g = rg.ReferralGraph.from_arrow(TREE.drop_columns(["channel"]))
    assert g.channels(EVENTS).column("channel").to_pylist() == [None]
    with pytest.raises(rg.SchemaError, match="spend"):
        tree().channels(EVENTS, spend=pa.table({"channel": ["ads"], "cost": [1]}))


def test_metrics_definitions() -> None:
    m = tree().metrics(EVENTS)
    assert (m["users"], m["roots"], m["referred_users"]) == (6, 2, 4)
    assert m["k_factor"] == 4 / 6 and m["viral_multiplier"] == 3.0
    # Join delays (days): 2-1: 1, 3-1: 3, 4-2: 1, 5-4: 8 -> median 2 days.
    assert m["median_join_delay"] == dt.timedelta(days=2)
    assert m["join_pairs"] == 4
    assert m["depth_histogram"] == [2, 2, 1, 1]
    # Buyers 2 (twice), 4, 5, 6; invitees of buyers who bought: 4 (of 2), 5 (of 4).
    assert (m["buyers"], m["repeat_buyers"]) == (4, 1)
    assert m["buyer_k_factor"] == 2 / 4 and m["repeat_purchase_rate"] == 1 / 4
    assert (m["events"], m["unknown_buyer_events"]) == (7, 1)
    bare = tree().metrics()
    assert bare["buyers"] is None and bare["buyer_k_factor"] is None


@given(st.data(), st.sampled_from(["int64", "decimal128"]))
def test_pyramid_channels_metrics_match_the_reference(
    data: st.DataObject, amount_type: str
) -> None:
    referrals = data.draw(rgst.referral_tables())
    events = data.draw(rgst.events(referrals, amount_type=amount_type, with_ts=False))
    g = rg.ReferralGraph.from_arrow(referrals)
    refs, evs = referrals.to_pylist(), events.to_pylist()
    assert g.pyramid(events).drop_columns(["attenuation"]).to_pylist() == reference.pyramid(
        refs, evs
    )
    want = reference.channels(refs, evs)
    got = {r.pop("channel"): r for r in g.channels(events).to_pylist()}
    for r in got.values():
        for c in ("viral_multiplier", "amount"):
            r.pop(c)
    assert got == want
    m = g.metrics(events)
    w = reference.metrics(refs, evs)
    delay = w.pop("median_join_delay")
    assert m.pop("median_join_delay_ns") == (
        None if delay is None else delay // dt.timedelta(microseconds=1) * 1000
    )
    m.pop("median_join_delay")
    assert {k: m[k] for k in w} == w


def test_results_do_not_depend_on_the_thread_count() -> None:
    script = """
import json, referralgraph as rg
r, e = rg.synthetic.program(users=30_000, seed=3)
e = e.set_column(e.schema.get_field_index("amount"), "amount", e.column("amount").cast("float64"))
g = rg.ReferralGraph.from_arrow(r)
s = g.scores(e, max_depth=3)
print(json.dumps([s.column("score").to_pylist(), s.column("tier").to_pylist(),
                  g.reach(4).column("level_4").to_pylist(), g.pyramid(e).to_pylist()]))
"""
    outs = outputs_per_thread_count(script)
    assert len(outs) == 1
    assert len(json.loads(outs.pop())[0]) >= 30_000


def test_an_empty_program() -> None:
    empty = pa.table({"user_id": pa.array([], pa.int64()), "referrer_id": pa.array([], pa.int64())})
    g = rg.ReferralGraph.from_arrow(empty)
    ev = pa.table({"user_id": pa.array([], pa.int64()), "amount": pa.array([], pa.int64())})
    assert g.reach(2).num_rows == g.scores(ev).num_rows == 0
    assert g.pyramid().num_rows == g.pyramid(ev).num_rows == g.channels(ev).num_rows == 0
    m = g.metrics(ev)
    assert (m["users"], m["k_factor"], m["buyer_k_factor"], m["depth_histogram"]) == (
        0,
        None,
        None,
        [],
    )


@given(rgst.referral_tables(implicit_roots=False), st.integers(0, 3), st.data())
def test_reach_of_an_extended_graph_matches_the_reference(
    referrals: pa.Table, k: int, data: st.DataObject
) -> None:
    # Users added by extend() keep the base's numbering (not breadth-first):
    # reach then goes through a lazily built layout.
    rows = referrals.to_pylist()
    order = data.draw(st.permutations(range(len(rows))))
    split = data.draw(st.integers(0, len(rows)))
    # A base must hold every referrer of its own rows: put rows in an order
    # where referrers come first, then split anywhere.
    ids = {r["user_id"]: r for r in rows}
    placed: list[dict[str, Any]] = []
    seen: set[Any] = set()

    def place(r: dict[str, Any]) -> None:
        if r["user_id"] in seen:
            return
        if r["referrer_id"] is not None:
            place(ids[r["referrer_id"]])
        seen.add(r["user_id"])
        placed.append(r)

    for i in order:
        place(rows[i])
    base = pa.Table.from_pylist(placed[:split], schema=referrals.schema)
    more = pa.Table.from_pylist(placed[split:], schema=referrals.schema)
    g = rg.ReferralGraph.from_arrow(base).extend(more)
    assert by_user(g.reach(max_depth=k)) == reference.reach(rows, k)


def test_clean_events_drops_and_reports_every_bad_row() -> None:
    ev = pa.table(
        {
            "user_id": pa.array([2, None, 4, 5, 2], pa.int64()),
            "amount": [100.0, 5.0, math.nan, None, 1.0],
            "ts": pa.array([T0, T0, T0, T0, None], pa.timestamp("s")),
        }
    )
    with pytest.raises(rg.InvalidInputError):
        tree().scores(ev)
    clean, issues = tree().clean_events(ev)
    assert clean.num_rows == 1 and clean.column("user_id").to_pylist() == [2]
    assert issues.column("row").to_pylist() == [1, 2, 3, 4]
    assert issues.column("kind").to_pylist() == [
        "null_id",
        "invalid_amount",
        "null_amount",
        "null_ts",
    ]
    assert by_user(tree().scores(clean))[2]["own_amount"] == 100.0
    good = pa.table({"user_id": [2], "amount": [1]})
    same, none = tree().clean_events(good)
    assert same.equals(good) and none.num_rows == 0
