"""Attribution: referralgraph against DuckDB, polars and numpy, side by side.

Same Arrow tables for everyone (a synthetic program), rates [0.10, 0.05,
0.02], output = the ledger (event, buyer, beneficiary, level, amount,
credit) and the totals per beneficiary (credit, events) sorted into a
leaderboard, as tables (DuckDB and polars) or arrays (numpy: no ledger
rows kept). Two timings each:

- end to end: from the Arrow tables (referralgraph: build + attribute;
  peers: everything including their id -> parent resolution);
- attribution alone: referralgraph on an already-built graph (what a
  service or a daily job with a saved graph pays); numpy with the parent
  index already resolved; DuckDB and polars have no separate build step.

Then a full policy (window + purchased qualification + compression + cap)
for referralgraph, and session latency (median, p99) from Python.

    python benches/attribution.py --users 2000000 --repeats 5
    python benches/attribution.py --users 10000000 --events-per-user 5 --repeats 3 --peers polars
    python benches/attribution.py --beibei ../shared/data/beibei_groupbuy_{test,tune}.txt

Peak memory (referralgraph) is the RSS above the inputs and the built graph
while one attribute() call runs, its result included.
"""

from __future__ import annotations

import os

# numpy's BLAS threads spin after use and would steal the 2 cores from
# whichever engine runs next; the benchmarks use no BLAS routines.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import referralgraph as rg
from _util import median_time, peak_during, tee_stdout

RATES = [0.10, 0.05, 0.02]
PPM = [round(r * 1e6) for r in RATES]


def duckdb_attribute(referrals: pa.Table, events: pa.Table) -> tuple[int, int]:
    """The ledger and the totals as Arrow tables, as referralgraph returns
    them (a count alone would let DuckDB skip writing the ledger)."""
    import duckdb

    con = duckdb.connect()
    con.register("referrals", referrals)
    con.register("events", events)
    ledger = _arrow(
        con.sql(
            f"""
        WITH RECURSIVE chain(event_id, buyer_id, ancestor, level, amount) AS (
            SELECT e.event_id, e.user_id, r.referrer_id, 1, e.amount
            FROM events e JOIN referrals r ON e.user_id = r.user_id
            WHERE r.referrer_id IS NOT NULL
          UNION ALL
            SELECT c.event_id, c.buyer_id, r.referrer_id, c.level + 1, c.amount
            FROM chain c JOIN referrals r ON c.ancestor = r.user_id
            WHERE r.referrer_id IS NOT NULL AND c.level < {len(RATES)}
        )
        SELECT event_id, buyer_id, ancestor AS beneficiary_id, level, amount,
               sign(amount) * (abs(amount) * (CASE level WHEN 1 THEN {PPM[0]}
                    WHEN 2 THEN {PPM[1]} ELSE {PPM[2]} END) // 1000000) AS credit
        FROM chain
        """
        )
    )
    con.register("ledger", ledger)
    totals = _arrow(
        con.sql(
            "SELECT beneficiary_id, sum(credit) AS credit, count(*) AS events "
            "FROM ledger GROUP BY beneficiary_id ORDER BY credit DESC, beneficiary_id"
        )
    )
    con.close()
    return ledger.num_rows, totals.num_rows


def _arrow(rel: Any) -> pa.Table:
    """A DuckDB relation as an Arrow table (`to_arrow_table` from 1.4 on)."""
    fetch = getattr(rel, "to_arrow_table", None) or rel.arrow
    table = fetch()
    assert isinstance(table, pa.Table)
    return table


def duckdb_full_policy(
    referrals: pa.Table, events: pa.Table, cap: int
) -> tuple[int, int, np.ndarray]:
    """The full policy in SQL: window 365d, qualify="purchased", compression,
    cap per beneficiary. Compression: the recursive CTE walks every hop
    and carries the number of qualified ancestors so far, so an unqualified
    one is skipped without using up a level. The cap is a window sum:
    paid = clamp(cap - (credits before, unclamped), 0, want). That is the
    rule exactly unless a refund lowers a beneficiary's total after it
    reached the cap (the true running total is clamped, a window sum is
    not): SQL has no bounded running sum short of a row-by-row recursive
    CTE per beneficiary. Returns (ledger rows, credited, credits in ledger
    order) so the caller can count the rows that differ."""
    import duckdb

    con = duckdb.connect()
    con.register("referrals", referrals)
    con.register("events", events)
    credit = (
        "sign(amount) * (abs(amount) * (CASE level WHEN 1 THEN {} WHEN 2 THEN {} "
        "ELSE {} END) // 1000000)".format(*PPM)
    )
    got = con.execute(
        f"""
        WITH RECURSIVE
        ev AS (SELECT row_number() OVER () - 1 AS row, * FROM events),
        first_buy AS (SELECT user_id, min(ts) AS t FROM events WHERE amount > 0
                      GROUP BY user_id),
        creditable AS (
            SELECT e.row, e.amount, e.ts, r.referrer_id AS a
            FROM ev e JOIN referrals r ON e.user_id = r.user_id
            WHERE r.referrer_id IS NOT NULL
              AND epoch_ns(e.ts) BETWEEN epoch_ns(r.joined_at)
                                     AND epoch_ns(r.joined_at) + 31536000000000000
        ),
        chain(row, amount, ts, a, q, level) AS (
            SELECT c.row, c.amount, c.ts, c.a, coalesce(f.t <= c.ts, false),
                   CASE WHEN f.t <= c.ts THEN 1 ELSE 0 END
            FROM creditable c LEFT JOIN first_buy f ON f.user_id = c.a
          UNION ALL
            SELECT h.row, h.amount, h.ts, r.referrer_id, coalesce(f.t <= h.ts, false),
                   h.level + CASE WHEN f.t <= h.ts THEN 1 ELSE 0 END
            FROM chain h JOIN referrals r ON r.user_id = h.a
            LEFT JOIN first_buy f ON f.user_id = r.referrer_id
            WHERE r.referrer_id IS NOT NULL AND h.level < {len(RATES)}
        ),
        ledger AS (
            SELECT row, a AS beneficiary, level, ts, {credit} AS want
            FROM chain WHERE q
        ),
        capped AS (
            SELECT row, level, beneficiary, want,
                   sum(want) OVER (PARTITION BY beneficiary ORDER BY ts, row
                                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
            FROM ledger
        )
        SELECT row, level,
               CASE WHEN want > 0
                    THEN greatest(0, least(want, {cap} - coalesce(before, 0)))
                    ELSE want END AS credit
        FROM capped ORDER BY row, level
        """
    ).fetchnumpy()
    con.close()
    c = got["credit"]
    return len(c), int(c.sum()), c


def polars_attribute(referrals: pa.Table, events: pa.Table) -> tuple[int, int]:
    import polars as pl

    ref = pl.from_arrow(referrals.select(["user_id", "referrer_id"]))
    ev = pl.from_arrow(events.select(["event_id", "user_id", "amount"]))
    assert isinstance(ref, pl.DataFrame) and isinstance(ev, pl.DataFrame)
    cur = ev.with_columns(pl.col("user_id").alias("node")).rename({"user_id": "buyer_id"})
    parts = []
    for level, ppm in enumerate(PPM, 1):
        cur = cur.join(ref, left_on="node", right_on="user_id", how="inner").filter(
            pl.col("referrer_id").is_not_null()
        )
        cur = cur.select("event_id", "buyer_id", "amount", pl.col("referrer_id").alias("node"))
        credit = (pl.col("amount").abs() * ppm // 1_000_000) * pl.col("amount").sign()
        parts.append(
            cur.select(
                "event_id",
                "buyer_id",
                pl.col("node").alias("beneficiary_id"),
                pl.lit(level, dtype=pl.UInt8).alias("level"),
                "amount",
                credit.alias("credit"),
            )
        )
    ledger = pl.concat(parts)
    totals = (
        ledger.group_by("beneficiary_id")
        .agg(pl.col("credit").sum(), pl.len().alias("events"))
        .sort(["credit", "beneficiary_id"], descending=[True, False])
    )
    return ledger.height, totals.height


def numpy_parent_index(referrals: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Sorted user ids and each one's parent position (-1: root)."""
    users = referrals.column("user_id").to_numpy()
    refs = referrals.column("referrer_id").fill_null(-1).to_numpy()
    order = np.argsort(users)
    sorted_ids = users[order]
    pos = np.searchsorted(sorted_ids, refs)
    pos = np.where((refs >= 0) & (pos < len(sorted_ids)), pos, -1)
    found = (pos >= 0) & (sorted_ids[np.clip(pos, 0, None)] == refs)
    parent_by_row = np.where(found, pos, -1)
    return sorted_ids, parent_by_row[order]  # indexed by sorted position


def numpy_attribute(
    sorted_ids: np.ndarray, parent: np.ndarray, events: pa.Table
) -> tuple[int, int]:
    buyers = events.column("user_id").to_numpy()
    amount = events.column("amount").to_numpy()
    pos = np.clip(np.searchsorted(sorted_ids, buyers), 0, len(sorted_ids) - 1)
    cur = np.where(sorted_ids[pos] == buyers, pos, -1)
    rows = 0
    total = np.zeros(len(sorted_ids))
    for ppm in PPM:
        alive = cur >= 0
        cur = np.where(alive, parent[np.where(alive, cur, 0)], -1)
        ok = cur >= 0
        if not ok.any():
            break
        a = amount[ok]
        credit = np.sign(a) * (np.abs(a) * ppm // 1_000_000)
        total += np.bincount(cur[ok], weights=credit, minlength=len(sorted_ids))
        rows += int(ok.sum())
    return rows, int((total != 0).sum())


def _as_strings(t: pa.Table, columns: list[str]) -> pa.Table:
    """The id columns as strings: "u" + the number (nulls stay null)."""
    import pyarrow.compute as pc

    for c in columns:
        as_str = pc.binary_join_element_wise("u", pc.cast(t[c], pa.string()), "")
        t = t.set_column(t.schema.get_field_index(c), c, as_str)
    return t


def session_latency(
    g: rg.ReferralGraph, events: pa.Table, threads: int, calls: int
) -> tuple[float, float]:
    s = g.session(rg.Policy(rates=RATES, qualify="purchased", cap_per_beneficiary=50_000))
    buyers = events.column("user_id").to_pylist()[:calls]
    amounts = events.column("amount").to_pylist()[:calls]
    calls = len(buyers)  # fewer on a small program
    lat: list[float] = []
    lock = threading.Lock()

    def work(part: range) -> None:
        mine = []
        for i in part:
            t = time.perf_counter_ns()
            s.attribute(buyers[i], amounts[i])
            mine.append((time.perf_counter_ns() - t) / 1000)
        with lock:
            lat.extend(mine)

    step = calls // threads
    ts = [
        threading.Thread(target=work, args=(range(k * step, (k + 1) * step),))
        for k in range(threads)
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    lat.sort()
    return statistics.median(lat), lat[int(len(lat) * 0.99)]


PEERS = ("duckdb", "polars", "numpy")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=2_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--events-per-user", type=float, default=None)
    ap.add_argument(
        "--peers",
        nargs="*",
        default=["duckdb", "polars", "numpy"],
        choices=PEERS,
        help="peers to run (none: referralgraph only, e.g. at 10M users / 50M events)",
    )
    ap.add_argument(
        "--beibei",
        nargs="+",
        metavar="FILE",
        help="the Beibei group-buy records (../shared/data/beibei_groupbuy_*.txt) "
        "instead of a synthetic program",
    )
    ap.add_argument(
        "--string-ids",
        action="store_true",
        help="ids as strings ('u' + the number; numpy is left out): the same program",
    )
    ap.add_argument("--save", metavar="FILE", help="also write the report to FILE (markdown)")
    args = ap.parse_args()
    with tee_stdout(args.save):
        run(args)


def run(args: argparse.Namespace) -> None:
    if args.beibei:
        from referralgraph.testing.datasets import beibei_program

        referrals, events = beibei_program(args.beibei)
        events = events.append_column("event_id", pa.array(np.arange(events.num_rows)))
        head = f"Beibei: {referrals.num_rows:,} users, {events.num_rows:,} events, rates {RATES}"
    else:
        extra = {} if args.events_per_user is None else {"events_per_user": args.events_per_user}
        referrals, events = rg.synthetic.program(args.users, seed=0, **extra)
        head = f"{args.users:,} users, {events.num_rows:,} events, rates {RATES}"
    if args.string_ids:
        referrals = _as_strings(referrals, ["user_id", "referrer_id"])
        events = _as_strings(events, ["user_id"])
        args.peers = [p for p in args.peers if p != "numpy"]
        head += ", string ids"
    print(f"{head}; medians of {args.repeats}\n")
    policy = rg.Policy(rates=RATES)
    g = rg.ReferralGraph.from_arrow(referrals)

    def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
        # One untimed call first, for every engine: the first call in a
        # process pays for fresh memory (and the peak measurement below
        # gives back the memory referralgraph keeps warm).
        return median_time(fn, args.repeats, warmup=1)

    peak, r = peak_during(lambda: g.attribute(events, policy))
    want_rows = r.stats["ledger_rows"]
    del r
    print(
        f"referralgraph peak memory above the inputs and graph: {peak / 2**30:.2f} GiB "
        f"({peak / want_rows:.0f} B per ledger row; the result's Arrow ledger is part of it)\n"
    )
    t_alone, _ = timed(lambda: g.attribute(events, policy))
    t_e2e, _ = timed(lambda: rg.ReferralGraph.from_arrow(referrals).attribute(events, policy))
    results = {"referralgraph": (t_e2e, t_alone, want_rows)}

    if "duckdb" in args.peers:
        t, (rows, _) = timed(lambda: duckdb_attribute(referrals, events))
        results["duckdb (recursive CTE)"] = (t, t, rows)
    if "polars" in args.peers:
        t, (rows, _) = timed(lambda: polars_attribute(referrals, events))
        results["polars (iterative joins)"] = (t, t, rows)
    if "numpy" in args.peers:
        t_idx, (ids, parent) = timed(lambda: numpy_parent_index(referrals))
        t_np, (rows, _) = timed(lambda: numpy_attribute(ids, parent, events))
        results["numpy (vectorised gathers)"] = (t_idx + t_np, t_np, rows)

    print("| engine | end to end | ratio | attribution alone | ratio | ledger rows |")
    print("|---|---|---|---|---|---|")
    for name, (e2e, alone, rows) in results.items():
        print(
            f"| {name} | {e2e:.3f} s | {e2e / t_e2e:.1f}x | {alone:.3f} s | "
            f"{alone / t_alone:.1f}x | {rows:,} |"
        )
    m = events.num_rows
    # The floor: one independent random read per event (a gather over an
    # array the size of the graph's parent array), measured here with numpy.
    table = np.arange(g.num_users, dtype=np.int64)
    idx = np.random.default_rng(0).integers(0, g.num_users, m)
    t_read, _ = median_time(lambda: table[idx], args.repeats)
    print(
        f"\nreferralgraph, attribution alone: {m / t_alone / 1e6:.1f} M events/s, "
        f"{want_rows / t_alone / 1e6:.1f} M ledger rows/s "
        f"({t_alone / m * 1e9:.0f} ns per event on 2 cores); floor: one independent "
        f"random read per event takes {t_read / m * 1e9:.1f} ns here (one core), "
        f"{t_read * 1e3:.1f} ms for all events"
    )
    # The output's own floor: the ledger's seven columns (six of 8 bytes,
    # level of 1) written once into fresh memory, which every engine that
    # hands the ledger back pays.
    t_write, _ = median_time(
        lambda: (
            [np.full(want_rows, 1, np.int64) for _ in range(6)] + [np.full(want_rows, 1, np.uint8)]
        ),
        args.repeats,
    )
    print(
        f"writing the ledger's 7 columns ({49 * want_rows / 2**30:.2f} GiB) once into fresh "
        f"memory takes {t_write * 1e3:.1f} ms here (numpy, one core)"
    )
    full = rg.Policy(
        rates=RATES,
        window="365d",
        qualify="purchased",
        compression=True,
        cap_per_beneficiary=50_000,
    )
    t_full, rf = timed(lambda: g.attribute(events, full))
    print(
        f"\nfull policy ({full}):\n\n"
        "| engine | time | ratio | ledger rows | credited | rows whose credit differs |\n"
        "|---|---|---|---|---|---|\n"
        f"| referralgraph | {t_full:.3f} s | 1.0x | {rf.stats['ledger_rows']:,} | "
        f"{rf.stats['credited']:,} | |"
    )
    if "duckdb" in args.peers and full.cap_per_beneficiary is not None:
        cap = int(full.cap_per_beneficiary)
        t_sql, (rows, credited, credits) = timed(lambda: duckdb_full_policy(referrals, events, cap))
        ours = rf.ledger.column("credit").to_numpy()
        differ = int((ours != credits).sum()) if len(ours) == rows else "n/a"
        print(
            f"| duckdb (recursive CTE + window-sum cap) | {t_sql:.3f} s | "
            f"{t_sql / t_full:.1f}x | {rows:,} | {credited:,} | {differ} |"
        )
    print(
        "\npolars has no recursive join: compression needs one join per hop up to the "
        "deepest chain (not a fixed D), so the full policy is left to the SQL peer."
    )
    for threads in (1, 2):
        med, p99 = session_latency(g, events, threads, 20_000)
        print(f"session.attribute, {threads} thread(s): median {med:.1f} µs, p99 {p99:.1f} µs")
    print("\n(ratio): engine time / referralgraph time; > 1 means referralgraph is faster.")


if __name__ == "__main__":
    main()
