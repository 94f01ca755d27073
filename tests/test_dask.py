"""Dask attribution on a LocalCluster of two worker processes: ledger,
totals and stats equal the single-machine result, for every rule that
needs a global order (qualification, first-N, caps) and their mix."""

from __future__ import annotations

import pandas as pd
import pytest
import referralgraph as rg

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
from referralgraph import dask as rgd  # noqa: E402

POLICIES = {
    "plain": rg.Policy(rates=[0.10, 0.05, 0.02]),
    "purchased_window": rg.Policy(rates=[0.1, 0.05], window="120d", qualify="purchased"),
    "min_spend_compression": rg.Policy(
        rates=[0.1, 0.05, 0.02], qualify=rg.MinSpend(5000), compression=True
    ),
    "first_n": rg.Policy(rates=[0.1, 0.05], max_events_per_buyer=2),
    "cap": rg.Policy(rates=[0.2, 0.1], cap_per_beneficiary=20_000),
    "everything": rg.Policy(
        rates=[0.1, 0.05, 0.02],
        window="200d",
        qualify=rg.MinSpend(3000),
        compression=True,
        max_events_per_buyer=3,
        cap_per_beneficiary=15_000,
    ),
}


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def program():
    referrals, events = rg.synthetic.program(20_000, seed=6)
    # Shuffle the rows so (ts, row) order differs from row order, and tie some timestamps.
    pdf = events.to_pandas().sample(frac=1.0, random_state=1).reset_index(drop=True)
    pdf.loc[::7, "ts"] = pdf["ts"].iloc[0]
    import pyarrow as pa

    events = pa.Table.from_pandas(pdf, preserve_index=False)
    return rg.ReferralGraph.from_arrow(referrals), events, pdf


def check(graph, events, pdf, policy, nparts=5, drop_ids=False):
    frame = pdf.drop(columns=["event_id"]) if drop_ids else pdf
    table = events.drop_columns(["event_id"]) if drop_ids else events
    want = graph.attribute(table, policy)
    r = rgd.attribute(graph, dd.from_pandas(frame, npartitions=nparts, sort=False), policy)
    ledger, totals, stats = r.compute()
    pd.testing.assert_frame_equal(ledger, want.ledger.to_pandas(), check_dtype=True)
    pd.testing.assert_frame_equal(totals, want.totals.to_pandas())
    assert stats == want.stats
    return want


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_ledger_totals_and_stats_equal_the_single_machine_run(client, program, name):
    graph, events, pdf = program
    want = check(graph, events, pdf, POLICIES[name])
    assert want.ledger.num_rows > 1000


@pytest.mark.parametrize("name", ["plain", "everything"])
def test_default_event_ids_are_global_row_numbers(client, program, name):
    # "plain" takes the walk that writes the output columns itself.
    graph, events, pdf = program
    check(graph, events, pdf, POLICIES[name], nparts=3, drop_ids=True)


def test_without_a_distributed_client(program):
    """The local scheduler: the graph is one shared key of the task graph."""
    graph, events, pdf = program
    check(graph, events, pdf, POLICIES["everything"], nparts=4)


def test_float_amounts(client, program):
    graph, _, pdf = program
    f = pdf.assign(amount=pdf["amount"] / 100.0)
    policy = rg.Policy(rates=[0.1, 0.05], qualify=rg.MinSpend(50.0), cap_per_beneficiary=150.0)
    import pyarrow as pa

    want = graph.attribute(pa.Table.from_pandas(f, preserve_index=False), policy)
    r = rgd.attribute(graph, dd.from_pandas(f, npartitions=4, sort=False), policy)
    ledger, _, stats = r.compute()
    pd.testing.assert_frame_equal(ledger, want.ledger.to_pandas())
    assert stats["credited"] == pytest.approx(want.stats["credited"])
    assert stats["capped_off"] == pytest.approx(want.stats["capped_off"])
