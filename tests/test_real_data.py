"""Real programs from ../shared/data (see its README): Beibei group buys and
the Twitter15/16 retweet cascades."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.compute as pc
import pytest
import referralgraph as rg
from referralgraph.testing import reference
from referralgraph.testing.datasets import beibei_program, data_dir, twitter_cascades

DATA = data_dir(Path(__file__).resolve().parents[2] / "shared" / "data")
BEIBEI = DATA / "beibei_groupbuy_test.txt"
TWITTER = DATA / "twitter1516_cascade_edges.tsv.gz"

pytestmark = pytest.mark.skipif(not BEIBEI.exists(), reason=f"{BEIBEI} not found")


def test_beibei_is_a_multi_level_forest():
    referrals, events = beibei_program([BEIBEI])
    g = rg.ReferralGraph.from_arrow(referrals)
    assert g.num_users == referrals.num_rows > 100_000
    assert g.max_depth >= 3  # users are initiators and participants both
    assert events.num_rows > 300_000


def test_beibei_attribution_matches_the_reference():
    referrals, events = beibei_program([BEIBEI])
    policy = rg.Policy(rates=[0.10, 0.05, 0.02], window="30d", max_events_per_buyer=3)
    got = rg.ReferralGraph.from_arrow(referrals).attribute(events, policy)
    want = reference.attribute(
        referrals.to_pylist(),
        events.to_pylist(),
        rates=list(policy.rates),
        window=dt.timedelta(days=30),
        max_events_per_buyer=3,
    )
    assert got.stats == want.stats
    assert got.ledger.to_pylist() == want.ledger
    assert got.totals.to_pylist() == want.totals
    assert got.stats["ledger_rows"] > 10_000


def test_beibei_scores_and_metrics_match_the_reference():
    referrals, events = beibei_program([BEIBEI])
    g = rg.ReferralGraph.from_arrow(referrals)
    refs, evs = referrals.to_pylist(), events.to_pylist()
    assert g.pyramid(events).drop_columns(["attenuation"]).to_pylist() == reference.pyramid(
        refs, evs
    )
    got = {r.pop("user_id"): r for r in g.scores(events, max_depth=2).to_pylist()}
    want = reference.scores(refs, evs, max_depth=2)
    assert got == want
    m = g.metrics(events)
    w = reference.metrics(refs, evs)
    assert m["median_join_delay"] == w["median_join_delay"]
    assert {k: m[k] for k in w} == w


@pytest.mark.skipif(not TWITTER.exists(), reason=f"{TWITTER} not found")
def test_twitter_cascades_pyramid_and_reach():
    referrals = twitter_cascades(TWITTER)
    g = rg.ReferralGraph.from_arrow(referrals)
    assert g.num_roots == 2139  # distinct source tweets
    assert g.num_users == referrals.num_rows > 850_000
    pyramid = g.pyramid()
    assert pyramid.drop_columns(["attenuation"]).to_pylist() == reference.pyramid(
        referrals.to_pylist()
    )
    users = pyramid.column("users").to_pylist()
    # The seeds' attenuation: each of the first layers below the sources is
    # about 4x smaller than the one above it.
    for d in (2, 3):
        assert 3.5 < users[d - 1] / users[d] < 5
    reach = g.reach(max_depth=3)
    # Every (ancestor, descendant) pair k levels apart is counted once.
    for k in (1, 2, 3):
        assert pc.sum(reach[f"level_{k}"]).as_py() == sum(users[k:])
    depth = g.users().column("depth")
    assert pc.sum(reach["descendants"]).as_py() == pc.sum(depth).as_py()
