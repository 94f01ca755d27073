"""Persistence: save, load and pickle a built graph (a service's restart,
a Dask worker's copy). Medians of --repeats runs.

    python benches/persist.py --users 10000000
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import referralgraph as rg
from _util import median_time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    referrals, _ = rg.synthetic.program(args.users, seed=0, events_per_user=0)
    g = rg.ReferralGraph.from_arrow(referrals)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "g.rg")
        t_save, _ = median_time(lambda: g.save(path), args.repeats)
        size = os.path.getsize(path)
        t_load, h = median_time(lambda: rg.ReferralGraph.load(path), args.repeats)
        assert h.num_users == g.num_users
    t_dumps, blob = median_time(lambda: pickle.dumps(g), args.repeats)
    t_loads, _ = median_time(lambda: pickle.loads(blob), args.repeats)
    print("| users | file | save (fsync) | load | pickle.dumps | pickle.loads |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {args.users:,} | {size / 1e6:.0f} MB ({size / args.users:.1f} B/user) | "
        f"{t_save:.3f} s | {t_load:.3f} s | {t_dumps:.3f} s | {t_loads:.3f} s |"
    )


if __name__ == "__main__":
    main()
