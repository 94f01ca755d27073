"""Dask attribution: scaling from 1 to 2 workers, against the
single-machine call on the same events.

A synthetic program's events are written as parquet parts and read back
with ``dd.read_parquet``; each worker process runs one task at a time with
the engine's thread pool pinned to one thread (RAYON_NUM_THREADS=1), so
"workers" is the number of cores used. The run computes totals and stats
(the whole pipeline: every ledger row is produced and summed; only the
small results travel back). Checked against the single-machine totals.

    python benches/dask_scaling.py                        # 10M users, 50M events
    python benches/dask_scaling.py --users 1000000 --events-per-user 5
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import referralgraph as rg
from referralgraph import dask as rgd

POLICIES = {
    "rates [0.10, 0.05, 0.02]": rg.Policy(rates=[0.10, 0.05, 0.02]),
    "full (window, purchased, first 3, cap)": rg.Policy(
        rates=[0.10, 0.05, 0.02],
        window="365d",
        qualify="purchased",
        max_events_per_buyer=3,
        cap_per_beneficiary=50_000,
    ),
}


def main() -> None:
    import dask.dataframe as dd
    import distributed

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=10_000_000)
    ap.add_argument("--events-per-user", type=float, default=5.0)
    ap.add_argument("--parts", type=int, default=16)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "dask_scaling.md"))
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="rg-dask-"))
    try:
        referrals, events = rg.synthetic.program(a.users, seed=0, events_per_user=a.events_per_user)
        graph = rg.ReferralGraph.from_arrow(referrals)
        del referrals
        step = events.num_rows // a.parts + 1
        for i in range(a.parts):
            pq.write_table(events.slice(i * step, step), tmp / f"part-{i:03d}.parquet")
        lines = [
            "# Dask attribution: 1 to 2 workers\n",
            f"`python benches/dask_scaling.py {' '.join(sys.argv[1:])}`: "
            f"{graph.num_users:,} users, {events.num_rows:,} events in {a.parts} parquet parts; "
            "one core per worker.\n",
            "| policy | single machine (1 core) | single machine (2 cores) | "
            + " | ".join(f"dask, {w} worker{'s' if w > 1 else ''}" for w in a.workers)
            + " | speed-up |",
            "|---|---|---|" + "---|" * len(a.workers) + "---|",
        ]
        for name, policy in POLICIES.items():
            t = time.perf_counter()
            want = graph.attribute(events, policy)
            single2 = time.perf_counter() - t
            times = []
            for w in a.workers:
                with (
                    distributed.LocalCluster(
                        n_workers=w,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                        env={"RAYON_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
                        memory_limit=0,
                    ) as cluster,
                    distributed.Client(cluster),
                ):
                    t = time.perf_counter()
                    r = rgd.attribute(graph, dd.read_parquet(str(tmp)), policy)
                    totals, stats = r.totals.compute(), r.stats.compute()
                    times.append(time.perf_counter() - t)
                assert stats.iloc[0]["ledger_rows"] == want.stats["ledger_rows"]
                assert totals["credit"].sum() == want.stats["credited"]
                print(f"{name}: {w} worker(s) {times[-1]:.1f} s", flush=True)
            single1 = _single_one_core(tmp, graph, name)
            lines.append(
                f"| {name} | {single1:.1f} s | {single2:.1f} s | "
                + " | ".join(f"{t:.1f} s" for t in times)
                + f" | {times[0] / times[-1]:.2f}x |"
            )
            print(lines[-1], flush=True)
        Path(a.out).write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        Path(f"{tmp}.rg").unlink(missing_ok=True)


def _single_one_core(parts: Path, graph: rg.ReferralGraph, name: str) -> float:
    """The single-machine call with one engine thread, in a fresh process."""
    import subprocess

    saved = parts.parent / f"{parts.name}.rg"
    if not saved.exists():
        graph.save(saved)
    code = f"""
import time, pyarrow.parquet as pq, referralgraph as rg, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from dask_scaling import POLICIES
g = rg.ReferralGraph.load({str(saved)!r})
ev = pq.read_table({str(parts)!r})
t = time.perf_counter(); g.attribute(ev, POLICIES[{name!r}]); print(time.perf_counter() - t)
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "RAYON_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
