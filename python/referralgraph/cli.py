"""The ``referralgraph`` command line."""

from __future__ import annotations

import argparse
import sys
import time

from . import synthetic
from .graph import ReferralGraph


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
