"""Real programs from ../shared/data (see its README): Beibei group buys."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import referralgraph as rg
from referralgraph.testing import reference
from referralgraph.testing.datasets import beibei_program

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BEIBEI = DATA / "beibei_groupbuy_test.txt"

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
