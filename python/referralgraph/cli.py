"""The ``referralgraph`` command line."""

from __future__ import annotations

import argparse
import sys
import time

from . import synthetic
from .graph import ReferralGraph
from .policy import Policy


def _demo(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    referrals, events = synthetic.program(args.users, seed=args.seed)
    t1 = time.perf_counter()
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
    depth = g.users().column("depth").to_numpy()
    import numpy as np

    counts = np.bincount(depth)
    print("users by depth:    " + ", ".join(f"{d}: {c:,}" for d, c in enumerate(counts[:8])))

    policy = Policy(
        rates=[0.10, 0.05, 0.02],
        window="365d",
        qualify="purchased",
        cap_per_beneficiary=50_000,
    )
    t3 = time.perf_counter()
    result = g.attribute(events, policy)
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
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="referralgraph", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="a synthetic program end to end, printed report")
    demo.add_argument("--users", type=int, default=1_000_000)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
