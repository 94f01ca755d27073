"""Graph build: referralgraph against the peers a user would pick instead.

For each size and id kind, in one run: referralgraph's build (validation,
implicit roots, topological numbering, id index), a pyarrow hash join and a
polars hash join resolving every referrer to its row (the core of any
"who referred whom" table, without validation), and igraph's construction
from already-dense indices (its best case: it cannot take external ids
cheaply). Times are medians of --repeats runs; memory is the peak RSS above
the input while building, measured in a fresh process per case.

    python benches/build.py                 # 1M and 10M users
    python benches/build.py --sizes 1000000 --repeats 3
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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import referralgraph as rg
from _util import median_time, peak_during

KINDS = ("int64", "int64-dense", "string")


def make_input(n: int, kind: str) -> pa.Table:
    referrals, _ = rg.synthetic.program(n, seed=0, events_per_user=0.0)
    t = referrals.select(["user_id", "referrer_id", "joined_at"])
    if kind == "int64-dense":
        ref_ix = pc.index_in(t["referrer_id"], value_set=t["user_id"])
        t = t.set_column(0, "user_id", pa.array(np.arange(n, dtype=np.int64)))
        t = t.set_column(1, "referrer_id", ref_ix.cast(pa.int64()))
    elif kind == "string":
        t = t.set_column(0, "user_id", pc.cast(t["user_id"], pa.string()))
        t = t.set_column(1, "referrer_id", pc.cast(t["referrer_id"], pa.string()))
    return t.combine_chunks()


def child(n: int, kind: str, repeats: int) -> dict[str, object]:
    t = make_input(n, kind)
    out: dict[str, object] = {"users": n, "ids": kind}

    def build() -> rg.ReferralGraph:
        return rg.ReferralGraph.from_arrow(t)

    peak, g = peak_during(build)
    out["rg_peak_bytes_per_user"] = peak / n
    out["rg_held_bytes_per_user"] = g.nbytes / n
    del g
    out["referralgraph"], _ = median_time(build, repeats)

    users = pa.table({"user_id": t["user_id"], "row": pa.array(np.arange(n, dtype=np.int64))})

    def arrow_join() -> pa.Table:
        return t.join(users, keys="referrer_id", right_keys="user_id", join_type="left outer")

    out["pyarrow join"], _ = median_time(arrow_join, repeats)
    peak, _ = peak_during(arrow_join)
    out["pyarrow_peak_bytes_per_user"] = peak / n

    try:
        import polars as pl

        df = pl.from_arrow(t)
        assert isinstance(df, pl.DataFrame)
        pusers = df.select(pl.col("user_id"), pl.int_range(pl.len()).alias("row"))

        def polars_join() -> pl.DataFrame:
            return df.join(pusers, left_on="referrer_id", right_on="user_id", how="left")

        out["polars join"], _ = median_time(polars_join, repeats)
        peak, _ = peak_during(polars_join)
        out["polars_peak_bytes_per_user"] = peak / n
    except ImportError:
        pass

    try:
        import igraph as ig

        child_ix = np.arange(n, dtype=np.int64)
        parent_ix = pc.index_in(t["referrer_id"], value_set=t["user_id"]).to_numpy(
            zero_copy_only=False
        )
        mask = ~np.isnan(parent_ix.astype(float))
        edges = np.column_stack([parent_ix[mask].astype(np.int64), child_ix[mask]])

        def igraph_build() -> object:
            return ig.Graph(n=n, edges=edges, directed=True)

        out["igraph (dense ix)"], _ = median_time(igraph_build, max(1, repeats // 2))
    except ImportError:
        pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--child", nargs=2, metavar=("N", "KIND"))
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1], args.repeats)))
        return

    peers = ["pyarrow join", "polars join", "igraph (dense ix)"]
    head = (
        f"| users | ids | referralgraph | {' | '.join(peers)} | rg peak B/user | rg held B/user |"
    )
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for n in args.sizes:
        for kind in args.kinds:
            res = subprocess.run(
                [sys.executable, __file__, "--child", str(n), kind, "--repeats", str(args.repeats)],
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(res.stdout.strip().splitlines()[-1])
            rg_t = float(r["referralgraph"])
            cells = []
            for p in peers:
                if p in r:
                    cells.append(f"{float(r[p]):.3f} s ({float(r[p]) / rg_t:.1f}x)")
                else:
                    cells.append("n/a")
            peak = float(r["rg_peak_bytes_per_user"])
            held = float(r["rg_held_bytes_per_user"])
            peers_s = " | ".join(cells)
            row = f"| {n:,} | {kind} | {rg_t:.3f} s | {peers_s} | {peak:.1f} | {held:.1f} |"
            print(row, flush=True)
    print("\n(x): peer time / referralgraph time; > 1 means referralgraph is faster.")


if __name__ == "__main__":
    main()
