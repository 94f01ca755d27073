"""``referralgraph demo``: a synthetic program end to end."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from . import report, synthetic
from .graph import ReferralGraph
from .policy import Policy


def run(
    *,
    users: int,
    seed: int,
    report_path: Path,
    step: Callable[..., AbstractContextManager[Callable[[int, int], None] | None]],
    echo: Callable[[str], None],
) -> None:
    """Generates a program of ``users`` users and prints the summary."""
    print = echo
    t0 = time.perf_counter()
    with step("generating a synthetic program"):
        referrals, events = synthetic.program(users, seed=seed)
    t1 = time.perf_counter()
    with step("building the graph"):
        g = ReferralGraph.from_arrow(referrals)
    t2 = time.perf_counter()
    print(
        f"synthetic program: {referrals.num_rows:,} users, {events.num_rows:,} events "
        f"generated in {t1 - t0:.2f} s"
    )
    print(
        f"graph:             {g.num_users:,} users, {g.num_roots:,} roots, max depth {g.max_depth}"
    )
    print(
        f"build time:        {t2 - t1:.3f} s "
        f"({g.nbytes / max(g.num_users, 1):.1f} bytes per user held)"
    )
    pyramid = g.pyramid(events)
    print(
        "users by depth:    "
        + ", ".join(f"{r['depth']}: {r['users']:,}" for r in pyramid.to_pylist()[:8])
    )

    policy = Policy(
        rates=[0.10, 0.05, 0.02],
        window="365d",
        qualify="purchased",
        cap_per_beneficiary=50_000,
    )
    t3 = time.perf_counter()
    with step("attributing") as progress:
        result = g.attribute(events, policy, progress=progress)
    t4 = time.perf_counter()
    s = result.stats
    print(f"\nattribution:       {policy}")
    print(
        f"                   {s['events']:,} events in {t4 - t3:.3f} s "
        f"({s['events'] / (t4 - t3) / 1e6:.1f} M events/s), {s['ledger_rows']:,} ledger rows"
    )
    print(
        f"credited:          {s['credited'] / 100:,.2f} (forfeited {s['forfeited'] / 100:,.2f}, "
        f"capped off {s['capped_off'] / 100:,.2f})"
    )
    print("top beneficiaries:")
    for row in result.totals.slice(0, 5).to_pylist():
        levels = ", ".join(
            f"L{k}: {row[f'credit_level_{k}'] / 100:,.2f}" for k in range(1, policy.levels + 1)
        )
        print(
            f"  {row['beneficiary_id']:>14}  {row['credit'] / 100:>10,.2f}  "
            f"from {row['events']:,} events ({levels})"
        )
    _program(g, events, step)
    _seeds(g, step, print)
    t = time.perf_counter()
    with step("writing the report"):
        report.write(report_path, g, events, result=result)
    print(f"\nreport:            {report_path} ({time.perf_counter() - t:.2f} s)")


def _program(g: ReferralGraph, events: Any, step: Any) -> None:
    """Reach, core fans, channels and growth metrics of the demo program."""
    t = time.perf_counter()
    with step("reach"):
        reach = g.reach(max_depth=3)
    t_reach = time.perf_counter() - t
    t = time.perf_counter()
    with step("scores"):
        scores = g.scores(events, max_depth=3)
    t_scores = time.perf_counter() - t
    desc = reach.column("descendants").to_numpy()
    print(
        f"\nreach (K=3):       {reach.num_rows:,} users in {t_reach:.3f} s; "
        f"{int((desc > 0).sum()):,} referred someone, the widest reaches {int(desc.max()):,}"
    )
    tiers = scores.column("tier").combine_chunks().dictionary_decode().value_counts().to_pylist()
    by_tier = {d["values"]: d["counts"] for d in tiers}
    names = ("core", "advocate", "active", "dormant")
    print(
        f"scores:            {t_scores:.3f} s; tiers "
        + ", ".join(f"{k}: {by_tier.get(k, 0):,}" for k in names)
    )
    core = scores.filter(pc.equal(scores.column("tier").cast(pa.string()), "core"))
    top = core.sort_by([("score", "descending")]).slice(0, 3).to_pylist()
    for r in top:
        print(
            f"  core fan {r['user_id']:>12}: own {r['own_amount'] / 100:,.2f}, "
            f"{r['descendants']:,} descendants, downstream {r['downstream_amount'] / 100:,.2f}"
        )
    print("channels (users per root, amount incl. viral descendants):")
    for r in g.channels(events).to_pylist():
        print(
            f"  {r['channel'] or '(none)':>13}: {r['roots']:,} roots, "
            f"x{r['viral_multiplier']:.1f}, {r['amount'] / 100:,.2f}"
        )
    m = g.metrics(events)
    print(
        f"metrics:           K-factor {m['k_factor']:.3f}, "
        f"buyer K-factor {m['buyer_k_factor']:.3f}, "
        f"repeat-purchase rate {m['repeat_purchase_rate']:.3f}, "
        f"median join delay {m['median_join_delay']}"
    )


def _seeds(g: ReferralGraph, step: Any, print: Callable[[str], None]) -> None:
    """Whom to seed: IMM on the referral forest seen as a social graph in
    which a referral passes word of mouth on with probability 0.3."""
    t = time.perf_counter()
    sg = g.as_social(p=0.3)
    with step("seeds (IMM)") as progress:
        seeds = sg.seeds(10, epsilon=0.2, max_hops=3, progress=progress)
    spread = seeds.column("spread")
    print(
        f"\nseeds (IMM, k=10, p=0.3, 3 hops): {time.perf_counter() - t:.2f} s; "
        f"estimated reach of the 10: {spread[len(spread) - 1].as_py():,.0f} users"
    )
    for r in seeds.slice(0, 3).to_pylist():
        print(f"  #{r['rank']} {r['user_id']:>14}: +{r['marginal_gain']:,.0f} users")
