"""Which blocks get 2 MB pages (REFERRALGRAPH_HUGE_PAGES = tables, all, off):
first calls in a fresh process, warm calls in a loop, a call after the
allocator's cache expired, the first attribution on a graph loaded from a
file, and a social graph's HyperLogLog reach and IMM seeds. Each mode runs
in --processes fresh processes, interleaved; the tables give the range
over them of each process's median. First, what touching fresh memory
costs here, on 4 KB and on 2 MB pages.

    python benches/huge_pages.py --users 2000000 --processes 3
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import referralgraph as rg

MODES = ["tables", "all", "off"]
SOCIAL = {
    "hll_first": "HLL reach, first",
    "hll": "HLL reach, warm",
    "seeds_first": "IMM seeds, first",
    "seeds": "IMM seeds, warm",
}
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


def touch_cost(huge: bool, mb: int = 512) -> float:
    """ms per MB to write one byte per 4 KB of a fresh anonymous mapping,
    advised for huge pages or not."""
    size, align = mb << 20, 2 << 20
    m = mmap.mmap(-1, size + align, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    a = np.frombuffer(m, dtype=np.uint8)
    start = (-a.ctypes.data) % align
    if huge:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        libc.madvise(a.ctypes.data + start, size, 14)  # MADV_HUGEPAGE
    t = time.perf_counter()
    a[start : start + size : 4096] = 1
    dt = time.perf_counter() - t
    del a
    m.close()
    return dt * 1000 / mb


def child(kind: str, users: int, repeats: int, path: str) -> dict[str, float]:
    if kind == "touch":
        return {"4k": touch_cost(False), "2m": touch_cost(True)}
    if kind == "social":
        referrals, _ = rg.synthetic.program(users, seed=0, events_per_user=0)
        sg = rg.ReferralGraph.from_arrow(referrals).as_social(p=0.05)
        hll = [timed(lambda: sg.reach(k=3, method="hll", precision=8)) for _ in range(3)]
        seeds = [timed(lambda: sg.seeds(k=20, epsilon=0.3, seed=1)) for _ in range(3)]
        return {
            "hll_first": hll[0],
            "hll": statistics.median(hll[1:]),
            "seeds_first": seeds[0],
            "seeds": statistics.median(seeds[1:]),
        }
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
    ap.add_argument("--social-users", type=int, default=1_000_000)
    ap.add_argument("--child", nargs=3, metavar=("KIND", "USERS", "PATH"))
    args = ap.parse_args()
    if args.child:
        kind, users, path = args.child
        print(json.dumps(child(kind, int(users), args.repeats, path)))
        return

    def run_child(kind: str, users: int, path: str, mode: str) -> dict[str, float]:
        env = {**os.environ, "REFERRALGRAPH_HUGE_PAGES": mode}
        cmd = [sys.executable, __file__, "--repeats", str(args.repeats), "--child"]
        out = subprocess.run(
            [*cmd, kind, str(users), path], env=env, capture_output=True, text=True, check=True
        )
        return json.loads(out.stdout)

    touch = [run_child("touch", 0, "", "tables") for _ in range(args.processes)]
    cost = {k: [t[k] for t in touch] for k in ("4k", "2m")}
    print(
        "touching fresh memory, one fresh process each: 4 KB pages "
        f"{min(cost['4k']):.2f}-{max(cost['4k']):.2f} ms/MB, 2 MB pages "
        f"{min(cost['2m']):.2f}-{max(cost['2m']):.2f} ms/MB\n"
    )
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "g.rg")
        referrals, _ = rg.synthetic.program(args.users, seed=0, events_per_user=0)
        rg.ReferralGraph.from_arrow(referrals).save(path)
        del referrals
        for _ in range(args.processes):
            for mode in MODES:
                run: dict[str, float] = {}
                for kind in ("loop", "loaded"):
                    run.update(run_child(kind, args.users, path, mode))
                run.update(run_child("social", args.social_users, "", mode))
                runs[mode].append(run)
    print(f"{args.users:,} users, 5 events per user; range over {args.processes} processes\n")
    table(runs, COLUMNS)
    print(f"\nsocial graph of the program's {args.social_users:,} users (p = 0.05):")
    print("HLL reach k = 3, precision 8; IMM seeds k = 20, epsilon 0.3\n")
    table(runs, SOCIAL)


def table(runs: dict[str, list[dict[str, float]]], columns: dict[str, str]) -> None:
    print("| mode | " + " | ".join(columns.values()) + " |")
    print("|---|" + "---|" * len(columns))
    for mode in MODES:
        cells = []
        for key in columns:
            xs = [r[key] for r in runs[mode]]
            cells.append(f"{min(xs):.2f}-{max(xs):.2f} s")
        print(f"| `{mode}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
