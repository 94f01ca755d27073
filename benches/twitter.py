"""The Twitter15/16 retweet cascades (Ma, Gao, Wong, ACL 2017) as a referral
forest: who passed a story to whom. Prints the pyramid (with each layer's
attenuation), the reach distribution and the timings, as in the README.

    python benches/twitter.py [path/to/twitter1516_cascade_edges.tsv.gz]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import referralgraph as rg
from referralgraph.testing.datasets import data_dir, twitter_cascades

DEFAULT = (
    data_dir(Path(__file__).resolve().parents[2] / "shared" / "data")
    / "twitter1516_cascade_edges.tsv.gz"
)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    t = time.perf_counter()
    referrals = twitter_cascades(path)
    t_read = time.perf_counter() - t
    t = time.perf_counter()
    g = rg.ReferralGraph.from_arrow(referrals)
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    pyramid = g.pyramid()
    t_pyr = time.perf_counter() - t
    t = time.perf_counter()
    reach = g.reach(max_depth=3)
    t_reach = time.perf_counter() - t
    print(
        f"{g}: read {t_read:.2f} s, build {t_build:.2f} s, pyramid {t_pyr:.3f} s, "
        f"reach(K=3) {t_reach:.3f} s"
    )
    print("\n| depth | users | attenuation (users above / users here) |")
    print("|---|---|---|")
    for r in pyramid.to_pylist():
        att = "" if r["attenuation"] is None else f"{r['attenuation']:.2f}"
        print(f"| {r['depth']} | {r['users']:,} | {att} |")
    desc = reach.column("descendants").to_numpy()
    l1, l2 = reach.column("level_1").to_numpy(), reach.column("level_2").to_numpy()
    spreaders = desc > 0
    print(f"\nusers who passed a story on: {spreaders.sum():,} of {len(desc):,}")
    for name, col in (("direct (level_1)", l1), ("level_2", l2), ("descendants", desc)):
        v = col[spreaders]
        q = np.percentile(v, [50, 90, 99, 99.9])
        print(
            f"{name:17s} among them: median {q[0]:.0f}, p90 {q[1]:.0f}, p99 {q[2]:.0f}, "
            f"p99.9 {q[3]:.0f}, max {v.max():,}"
        )
    m = g.metrics()
    print(f"median delay between a user and who they got it from: {m['median_join_delay']}")


if __name__ == "__main__":
    main()
