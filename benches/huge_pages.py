"""Which blocks get 2 MB pages (REFERRALGRAPH_HUGE_PAGES = tables, all, off):
first calls in a fresh process, warm calls in a loop, a call after the
allocator's cache expired, and the first attribution on a graph loaded
from a file. Each mode runs in --processes fresh processes, interleaved;
the table gives the range over them of each process's median.

    python benches/huge_pages.py --users 2000000 --processes 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import referralgraph as rg

MODES = ["tables", "all", "off"]
COLUMNS = {
    "first": "first build + attribute",
    "e2e": "then end to end",
    "alone": "attribution alone",
    "loaded": "first attribution, loaded graph",
    "idle": "after 12 s idle",
}


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def child(kind: str, users: int, repeats: int, path: str) -> dict[str, float]:
    referrals, events = rg.synthetic.program(users, seed=0)
    policy = rg.Policy(rates=[0.1, 0.05, 0.02])
    if kind == "loaded":
        # A service's start: load the saved graph, serve a first batch.
        loaded = rg.ReferralGraph.load(path)
        return {"loaded": timed(lambda: loaded.attribute(events, policy))}
    out: dict[str, float] = {}
    e2e = [
        timed(lambda: rg.ReferralGraph.from_arrow(referrals).attribute(events, policy))
        for _ in range(repeats)
    ]
    out["first"], out["e2e"] = e2e[0], statistics.median(e2e[1:])
    built = rg.ReferralGraph.from_arrow(referrals)
    alone = [timed(lambda: built.attribute(events, policy)) for _ in range(repeats)]
    out["alone"] = statistics.median(alone)
    # The cache keeps freed blocks 10 s: after that a call finds fresh memory.
    time.sleep(12)
    out["idle"] = timed(lambda: built.attribute(events, policy))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=2_000_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--processes", type=int, default=3)
    ap.add_argument("--child", nargs=3, metavar=("KIND", "USERS", "PATH"))
    args = ap.parse_args()
    if args.child:
        kind, users, path = args.child
        print(json.dumps(child(kind, int(users), args.repeats, path)))
        return
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "g.rg")
        referrals, _ = rg.synthetic.program(args.users, seed=0, events_per_user=0)
        rg.ReferralGraph.from_arrow(referrals).save(path)
        del referrals
        for _ in range(args.processes):
            for mode in MODES:
                env = {**os.environ, "REFERRALGRAPH_HUGE_PAGES": mode}
                cmd = [sys.executable, __file__, "--repeats", str(args.repeats), "--child"]
                run: dict[str, float] = {}
                for kind in ("loop", "loaded"):
                    out = subprocess.run(
                        [*cmd, kind, str(args.users), path],
                        env=env,
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    run.update(json.loads(out.stdout))
                runs[mode].append(run)
    print(f"{args.users:,} users, 5 events per user; range over {args.processes} processes\n")
    print("| mode | " + " | ".join(COLUMNS.values()) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    for mode in MODES:
        cells = []
        for key in COLUMNS:
            xs = [r[key] for r in runs[mode]]
            cells.append(f"{min(xs):.2f}-{max(xs):.2f} s")
        print(f"| `{mode}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
