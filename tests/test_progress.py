"""Progress reported from the Rust passes, and Ctrl-C stopping them."""

from __future__ import annotations

import os
import signal
import threading
import time

import pyarrow as pa
import pytest
import referralgraph as rg


@pytest.fixture(scope="module")
def social() -> rg.SocialGraph:
    return rg.SocialGraph.from_arrow(rg.synthetic.social(200_000, seed=1), p=0.01)


def test_progress_is_reported_and_ends_at_the_total(social):
    calls: list[tuple[int, int]] = []
    social.seeds(20, epsilon=0.2, progress=lambda d, t: calls.append((d, t)))
    assert len(calls) >= 2  # at least one tick while running, and the end
    assert all(0 <= d <= t for d, t in calls)
    assert calls[-1][0] == calls[-1][1] > 0


def test_attribution_reports_events_walked():
    referrals, events = rg.synthetic.program(300_000, seed=2)
    g = rg.ReferralGraph.from_arrow(referrals)
    calls: list[tuple[int, int]] = []
    r = g.attribute(
        events, rg.Policy(rates=[0.1, 0.05]), progress=lambda d, t: calls.append((d, t))
    )
    assert calls[-1] == (events.num_rows, events.num_rows)
    assert r.stats["events"] == events.num_rows


def test_an_exception_in_the_callback_stops_the_work(social):
    def boom(done: int, total: int) -> None:
        raise RuntimeError("stop here")

    t = time.perf_counter()
    with pytest.raises(RuntimeError, match="stop here"):
        social.spread(list(range(50)), simulations=10_000_000, progress=boom)
    assert time.perf_counter() - t < 5  # 10M cascades would take minutes


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals")
def test_ctrl_c_interrupts_a_long_call(social):
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    t = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            social.spread(list(range(50)), simulations=10_000_000)
    finally:
        timer.cancel()
    assert time.perf_counter() - t < 5
    # The graph is intact and usable afterwards.
    assert social.spread([0], simulations=100).mean >= 1


def test_graph_builds_report_their_passes_over_the_rows():
    referrals, _ = rg.synthetic.program(1_000_000, seed=4)
    calls: list[tuple[int, int]] = []
    g = rg.ReferralGraph.from_arrow(referrals, progress=lambda d, t: calls.append((d, t)))
    passes = 5  # index, referrers, numbering, cycle check, assembly
    assert calls[-1] == (passes * referrals.num_rows,) * 2
    assert all(0 <= d <= t for d, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    calls.clear()
    new = pa.table({"user_id": [-1, -2], "referrer_id": [None, -1]})
    assert g.extend(new, progress=lambda d, t: calls.append((d, t))).num_users == g.num_users + 2
    assert calls[-1] == (passes * 2,) * 2

    edges = rg.synthetic.social(100_000, seed=2)
    calls.clear()
    rg.SocialGraph.from_arrow(edges, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (3 * edges.num_rows,) * 2  # rows, out-edges, in-edges


def test_an_exception_in_a_graph_builds_callback_is_raised():
    referrals, _ = rg.synthetic.program(2_000_000, seed=5)

    def boom(done: int, total: int) -> None:
        raise RuntimeError("stop the build")

    with pytest.raises(RuntimeError, match="stop the build"):
        rg.ReferralGraph.from_arrow(referrals, progress=boom)
