"""Social graphs: referralgraph against the peers a user would pick instead,
side by side in one run, ratios printed (peer time / referralgraph time).

- Exact k-hop reach (k = 2) against igraph ``neighborhood_size(order=2,
  mode="out")`` (graph construction not timed for either) on power-law
  graphs of 100k and 1M users.
- HyperLogLog reach (HyperBall) on 1M users / 10M edges: time, counter
  memory, and relative error against igraph's exact counts on 1,000
  sampled users.
- Spread simulation against cynetdiff (Cython IC / LT) on the same graph and
  probabilities: simulations per second, means within error.
- IMM (k = 50, epsilon = 0.1) with weighted cascade and uniform p = 0.01 on
  the real networks of ../shared/data, and with ``max_hops=2``: time, RR-set
  memory, spread of the seeds by independent Monte Carlo, next to the top-50
  by degree and degree-discount heuristics and the IMM paper's figures
  where it has them (NetHEPT).

    python benches/influence.py                      # everything (about 15 minutes)
    python benches/influence.py --only imm --repeats 3
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import referralgraph as rg
from _util import median_time, peak_during
from referralgraph.social import degree_heuristics
from referralgraph.testing.datasets import data_dir, edge_list
from referralgraph.testing.peers import cynetdiff_model

DATA = data_dir(Path(__file__).resolve().parents[2] / "shared" / "data")

# name, file, undirected (as the IM literature uses it)
NETWORKS = [
    ("NetHEPT", "nethept_wc.txt", True),
    ("email-Eu-core", "email_eu_core.txt", False),
    ("wiki-Vote", "wiki_vote.txt", False),
    ("ego-Facebook", "facebook_combined.txt", True),
    ("LastFM Asia", "lastfm_asia.txt", True),
    ("Deezer Europe", "deezer_europe.txt", True),
]
# IMM paper (Tang, Shi, Xiao 2015), Figure 5a: NetHEPT, IC, weighted cascade, k = 50.
PAPER = {("NetHEPT", "weighted_cascade"): "~948 (top-50 by degree ~838)"}


def dense(edges: pa.Table) -> tuple[np.ndarray, np.ndarray, int]:
    """Edges as dense 0..n-1 indices (for igraph), ids being 0..n-1 already."""
    s = np.asarray(edges.column("src"))
    d = np.asarray(edges.column("dst"))
    return s, d, int(max(s.max(), d.max())) + 1


def bench_reach(sizes: list[int], repeats: int, out: list[str]) -> None:
    import igraph as ig

    out.append("### Exact reach, k = 2 (power-law graphs, average degree 10)\n")
    out.append("| users | edges | referralgraph | igraph neighborhood_size | ratio |")
    out.append("|---|---|---|---|---|")
    for n in sizes:
        edges = rg.synthetic.social(n, avg_degree=10, seed=0)
        sg = rg.SocialGraph.from_arrow(edges)
        t_rg, table = median_time(lambda sg=sg: sg.reach(k=2), repeats)
        s, d, nn = dense(edges)
        h = ig.Graph(n=nn, edges=np.column_stack([s, d]).tolist(), directed=True)
        h.simplify()
        t_ig, sizes_ig = median_time(
            lambda h=h: h.neighborhood_size(order=2, mode="out"), max(1, repeats // 2)
        )
        ids = np.asarray(table.column("user_id"))
        assert (np.asarray(table.column("reach_2")) == np.asarray(sizes_ig)[ids] - 1).all()
        out.append(
            f"| {sg.num_nodes:,} | {sg.num_edges:,} | {t_rg:.3f} s | {t_ig:.3f} s | "
            f"{t_ig / t_rg:.1f}x |"
        )
    out.append("")


def bench_hll(n: int, precision: int, repeats: int, out: list[str]) -> None:
    import igraph as ig

    edges = rg.synthetic.social(n, avg_degree=10, seed=0)
    sg = rg.SocialGraph.from_arrow(edges)
    mem, table = peak_during(lambda: sg.reach(k=2, method="hll", precision=precision))
    t, _ = median_time(lambda: sg.reach(k=2, method="hll", precision=precision), repeats)
    t_exact, _ = median_time(lambda: sg.reach(k=2), 1)
    s, d, nn = dense(edges)
    h = ig.Graph(n=nn, edges=np.column_stack([s, d]).tolist(), directed=True)
    h.simplify()
    rng = np.random.default_rng(0)
    ids = np.asarray(table.column("user_id"))
    rows = rng.choice(len(ids), size=1000, replace=False)
    exact = np.array(h.neighborhood_size(vertices=ids[rows].tolist(), order=2, mode="out")) - 1
    est = np.asarray(table.column("reach_2"))[rows]
    big = exact >= 100
    rel = (est[big] + 1) / (exact[big] + 1) - 1
    out.append(f"### HyperLogLog reach, k = 2, precision {precision}\n")
    out.append(
        f"{sg.num_nodes:,} users, {sg.num_edges:,} edges: {t:.3f} s (exact BFS: {t_exact:.3f} s), "
        f"peak memory {mem / 2**30:.2f} GiB (counters 2 * n * 2^{precision} = "
        f"{2 * sg.num_nodes * 2**precision / 2**30:.2f} GiB). Error on 1,000 sampled users "
        f"(the {big.sum()} with exact reach_2 >= 100): "
        f"RMS relative error {np.sqrt(np.mean(rel**2)):.4f}, "
        f"mean {np.mean(rel):+.4f}; expected about 1.04 / sqrt(2^{precision}) = "
        f"{1.04 / math.sqrt(2**precision):.4f}.\n"
    )


def bench_spread(sims: int, repeats: int, out: list[str]) -> None:
    out.append(f"### Spread simulation ({sims:,} cascades, 50 top-degree seeds)\n")
    out.append(
        "| graph | model | referralgraph | sims/s | cynetdiff | sims/s | ratio | "
        "mean (rg) | mean (cynetdiff) |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|")
    for name, file, undirected in NETWORKS[:3]:
        sg = rg.SocialGraph.from_arrow(
            edge_list(DATA / file, undirected=undirected), p="weighted_cascade"
        )
        seeds = degree_heuristics(sg, 50)["degree"]
        for model in ("ic", "lt"):
            t_rg, r = median_time(
                lambda sg=sg, seeds=seeds, model=model: sg.spread(
                    seeds, model=model, simulations=sims, seed=1
                ),
                repeats,
            )
            m, index = cynetdiff_model(sg, model)
            m.set_seeds([index[s] for s in seeds])

            def run(m=m) -> list[int]:
                got = []
                for _ in range(sims):
                    m.reset_model()
                    m.advance_until_completion()
                    got.append(m.get_num_activated_nodes())
                return got

            t_cy, runs = median_time(run, repeats)
            mean_cy = float(np.mean(runs))
            se_cy = float(np.std(runs, ddof=1) / math.sqrt(sims))
            out.append(
                f"| {name} | {model} | {t_rg:.3f} s | {sims / t_rg:,.0f} | {t_cy:.3f} s | "
                f"{sims / t_cy:,.0f} | {t_cy / t_rg:.1f}x | {r.mean:.1f} ± {r.stderr:.1f} | "
                f"{mean_cy:.1f} ± {se_cy:.1f} |"
            )
    out.append("")


def bench_imm(networks: list[tuple[str, Path, bool]], sims: int, out: list[str]) -> None:
    out.append(
        f"### IMM seeds, k = 50, epsilon = 0.1, IC (spreads: {sims:,} independent Monte Carlo "
        "cascades, ± standard error)\n"
    )
    out.append(
        "| graph | users | edges | p | max_hops | IMM time | RR sets | RR memory | IMM spread "
        "| IMM estimate | top-50 degree | degree discount | IMM paper |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, path, undirected in networks:
        edges = edge_list(path, undirected=undirected) if isinstance(path, Path) else path
        for p in ("weighted_cascade", 0.01):
            sg = rg.SocialGraph.from_arrow(edges, p=p)
            heur = degree_heuristics(sg, 50, p=None if p == "weighted_cascade" else p)
            for hops in (None, 2):
                t0 = time.perf_counter()
                seeds = sg.seeds(50, epsilon=0.1, seed=0, max_hops=hops)
                t = time.perf_counter() - t0
                st = rg.seeds_stats(seeds)

                def ev(ids: object, hops: int | None = hops, sg: rg.SocialGraph = sg) -> str:
                    r = sg.spread(ids, simulations=sims, seed=99, max_hops=hops)
                    return f"{r.mean:,.1f} ± {r.stderr:.1f}"

                out.append(
                    f"| {name} | {sg.num_nodes:,} | {sg.num_edges:,} | {p} | {hops or '-'} | "
                    f"{t:.2f} s | {st['rr_sets']:,} | {st['rr_bytes'] / 2**20:.1f} MiB | "
                    f"{ev(seeds.column('user_id'))} | {seeds.column('spread')[-1].as_py():,.1f} | "
                    f"{ev(heur['degree'])} | {ev(heur['degree_discount'])} | "
                    f"{PAPER.get((name, str(p)), '') if hops is None else ''} |"
                )
                print(out[-1], flush=True)
    out.append("")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", choices=["reach", "hll", "spread", "imm"], action="append")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--reach-sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--hll-users", type=int, default=1_000_000)
    ap.add_argument("--precision", type=int, default=8)
    ap.add_argument("--sims", type=int, default=10_000)
    ap.add_argument(
        "--synthetic", type=int, nargs="*", default=[100_000], help="power-law graphs for IMM"
    )
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "influence.md"))
    a = ap.parse_args()
    only = set(a.only or ["reach", "hll", "spread", "imm"])
    out = [
        f"# Social graphs: referralgraph {rg.__version__} against peers\n",
        f"`python benches/{Path(__file__).name} {' '.join(sys.argv[1:])}`; medians of "
        f"{a.repeats} runs; ratio = peer time / referralgraph time.\n",
    ]
    if "reach" in only:
        bench_reach(a.reach_sizes, a.repeats, out)
        print("\n".join(out), flush=True)
    if "hll" in only:
        bench_hll(a.hll_users, a.precision, a.repeats, out)
        print(out[-1], flush=True)
    if "spread" in only:
        bench_spread(a.sims, a.repeats, out)
        print("\n".join(out[-6:]), flush=True)
    if "imm" in only:
        nets: list[tuple[str, object, bool]] = [
            (name, DATA / f, u) for name, f, u in NETWORKS if (DATA / f).exists()
        ]
        nets += [
            (f"power-law {n:,}", rg.synthetic.social(n, avg_degree=10, seed=0), False)
            for n in a.synthetic
        ]
        bench_imm(nets, a.sims, out)  # type: ignore[arg-type]
    Path(a.out).write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
