"""Reach on the referral forest: referralgraph against the peers a user
would pick instead, and scores on a large program.

Reach (per size and K, in one fresh process per case, medians of
--repeats runs, on an already-built graph):
- referralgraph ``g.reach(K)``: the full table (user_id, depth, root_id,
  direct, level_1..level_K, descendants, height) as Arrow.
- numpy: the bincount formulation, level_k = bincount(parent,
  weights=level_{k-1}) — level counts only, from dense parent row indices
  (in the input's row order) handed over for free.
- polars: the same as iterative group-by/joins on a (user, parent) frame —
  level counts only.
- igraph: ``neighborhood_size(order=K, mode="out") - 1`` — one column (all
  descendants within K levels), graph construction not timed.

Scores: ``g.scores(events, max_depth=3)`` on a synthetic program, time and
peak memory above the inputs.

    python benches/reach.py                          # 1M and 10M users, K = 3 and 10
    python benches/reach.py --sizes 1000000 --ks 3 --repeats 3 --only reach
    python benches/reach.py --only scores --scores 10000000 --events-per-user 5
"""

from __future__ import annotations

import os

# numpy's BLAS threads spin after use and would steal the 2 cores from
# whichever engine runs next; the benchmarks use no BLAS routines.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import referralgraph as rg
from _util import median_time, peak_during

PEERS = ["numpy bincount", "polars joins", "igraph neighborhood_size"]


def parent_index(referrals: pa.Table) -> np.ndarray:
    """Dense parent row per row of the input (-1: root or implicit root):
    what a numpy / polars / igraph user starts from, in the input's order."""
    ix = pc.index_in(referrals["referrer_id"], value_set=referrals["user_id"])
    return np.asarray(ix.fill_null(-1).to_numpy(), dtype=np.int64)


def reach_case(n: int, k: int, repeats: int) -> dict[str, object]:
    referrals, _ = rg.synthetic.program(n, seed=0, events_per_user=0.0)
    g = rg.ReferralGraph.from_arrow(referrals)
    assert g.num_users == n  # no implicit roots: row i is user i for the peers
    out: dict[str, object] = {"users": n, "k": k}
    t = time.perf_counter()
    table = g.reach(max_depth=k)
    out["rg_first_call"] = time.perf_counter() - t
    del table
    out["referralgraph"], table = median_time(lambda: g.reach(max_depth=k), repeats)
    # The peers' rows are the input's rows: line referralgraph's columns up.
    row_of = g.index_of(referrals["user_id"].combine_chunks()).to_numpy().astype(np.int64)
    levels_rg = [table.column(f"level_{j}").to_numpy()[row_of] for j in range(1, k + 1)]
    del table

    parent = parent_index(referrals)
    has = parent >= 0
    pp = parent[has]

    def numpy_levels() -> list[np.ndarray]:
        cur = np.ones(n)
        out_levels = []
        for _ in range(k):
            cur = np.bincount(pp, weights=cur[has], minlength=n)
            out_levels.append(cur)
        return out_levels

    out["numpy bincount"], lv = median_time(numpy_levels, repeats)
    assert all(np.array_equal(a, b) for a, b in zip(lv, levels_rg, strict=True))
    del lv

    try:
        import polars as pl

        edges = pl.DataFrame({"user": np.flatnonzero(has), "parent": pp})

        def polars_levels() -> list[pl.DataFrame]:
            cur = edges.group_by("parent").len().rename({"parent": "user", "len": "c"})
            res = [cur]
            for _ in range(1, k):
                cur = (
                    edges.join(cur, on="user")
                    .group_by("parent")
                    .agg(pl.col("c").sum())
                    .rename({"parent": "user"})
                )
                res.append(cur)
            return res

        out["polars joins"], pres = median_time(polars_levels, repeats)
        last = pres[-1].sort("user")
        want = levels_rg[-1]
        assert int(last["c"].sum()) == int(want.sum())
        del pres, last
    except ImportError:
        pass

    try:
        import igraph as ig

        ixs = np.flatnonzero(has)
        graph = ig.Graph(n=n, edges=np.column_stack([pp, ixs]), directed=True)
        reps = max(1, repeats // 2)
        out["igraph neighborhood_size"], sizes = median_time(
            lambda: graph.neighborhood_size(order=k, mode="out"), reps
        )
        within = np.asarray(sizes) - 1
        assert np.array_equal(within, np.sum(levels_rg, axis=0))
    except ImportError:
        pass
    return out


def scores_case(n: int, events_per_user: float, repeats: int) -> dict[str, object]:
    referrals, events = rg.synthetic.program(n, seed=0, events_per_user=events_per_user)
    events = events.select(["user_id", "amount"])
    g = rg.ReferralGraph.from_arrow(referrals)
    del referrals
    out: dict[str, object] = {"users": n, "events": events.num_rows}
    peak, _ = peak_during(lambda: g.scores(events, max_depth=3))
    out["peak_bytes"] = peak
    out["scores"], _ = median_time(lambda: g.scores(events, max_depth=3), repeats)
    out["pyramid"], _ = median_time(lambda: g.pyramid(events), repeats)
    out["channels"], _ = median_time(lambda: g.channels(events), repeats)
    out["metrics"], _ = median_time(lambda: g.metrics(events), repeats)
    return out


def run_child(args: list[str]) -> dict[str, object]:
    res = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--ks", type=int, nargs="+", default=[3, 10])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--scores", type=int, nargs="+", default=[10_000_000], metavar="USERS")
    ap.add_argument("--only", choices=["reach", "scores"], default=None)
    ap.add_argument("--events-per-user", type=float, default=5.0)
    ap.add_argument("--child", nargs="+")
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "reach":
            r = reach_case(int(rest[0]), int(rest[1]), args.repeats)
        else:
            r = scores_case(int(rest[0]), float(rest[1]), args.repeats)
        print(json.dumps(r))
        return

    if args.only != "scores":
        head = f"| users | K | referralgraph (full table) | first call | {' | '.join(PEERS)} |"
        print(head)
        print("|" + "---|" * (head.count("|") - 1))
        for n in args.sizes:
            for k in args.ks:
                r = run_child(["--child", "reach", str(n), str(k), "--repeats", str(args.repeats)])
                rg_t = float(r["referralgraph"])
                cells = [
                    f"{float(r[p]):.3f} s ({float(r[p]) / rg_t:.1f}x)" if p in r else "n/a"
                    for p in PEERS
                ]
                print(
                    f"| {n:,} | {k} | {rg_t:.3f} s | {float(r['rg_first_call']):.3f} s | "
                    + " | ".join(cells)
                    + " |",
                    flush=True,
                )
        print("\n(x): peer time / referralgraph time; > 1 means referralgraph is faster.")
        print("first call: the first reach() on the graph (a graph from from_arrow or load")
        print("needs no lazy index; after extend() the first call builds the BFS layout).")
    if args.only == "reach":
        return
    print("\n| users | events | scores (K=3) | peak above inputs | pyramid | channels | metrics |")
    print("|---|---|---|---|---|---|---|")
    for n in args.scores:
        r = run_child(["--child", "scores", str(n), str(args.events_per_user), "--repeats", "3"])
        print(
            f"| {n:,} | {int(r['events']):,} | {float(r['scores']):.2f} s | "
            f"{float(r['peak_bytes']) / 2**30:.2f} GiB | {float(r['pyramid']):.2f} s | "
            f"{float(r['channels']):.2f} s | {float(r['metrics']):.2f} s |",
            flush=True,
        )


if __name__ == "__main__":
    main()
