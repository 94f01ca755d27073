"""Loaders that turn public data sets into referral programs, for tests
and benchmarks (the files themselves are not shipped; pass their paths).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["beibei_program", "data_dir", "edge_list", "twitter_cascades"]

_T0 = dt.datetime(2020, 1, 1)


def data_dir(default: str | os.PathLike[str]) -> Path:
    """Where the public data sets are: ``$REFERRALGRAPH_DATA`` when set,
    else ``default`` (the tests and benchmarks pass ``../shared/data``
    beside the checkout, so a clone elsewhere sets the variable)."""
    return Path(os.environ.get("REFERRALGRAPH_DATA") or default)


def beibei_program(paths: Iterable[str | os.PathLike[str]]) -> tuple[pa.Table, pa.Table]:
    """(referrals, events) from Beibei group-buy records (Zhang et al.,
    ICDE 2021): lines ``initiator \\t item \\t participant participant ...``.

    Records are read in file order, one minute apart. A user whose first
    appearance is as a participant was referred by that record's initiator;
    a user who first appears as an initiator joined on their own (a root).
    So every referrer appeared no later than their referee: no cycles.
    Events: in each record the initiator and every participant buy the
    item; the price in cents is derived from the item id (the data has no
    prices): ``500 + item * 7919 % 20000``.
    """
    referrer: dict[int, int | None] = {}
    joined: dict[int, int] = {}
    buyers: list[int] = []
    amounts: list[int] = []
    minutes: list[int] = []
    k = 0
    for path in paths:
        with open(path) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) < 2:
                    continue
                initiator, item = int(parts[0]), int(parts[1])
                participants = [int(x) for x in parts[2].split()] if len(parts) > 2 else []
                price = 500 + item * 7919 % 20000
                if initiator not in referrer:
                    referrer[initiator], joined[initiator] = None, k
                buyers.append(initiator)
                for p in participants:
                    if p not in referrer:
                        referrer[p], joined[p] = (None if p == initiator else initiator), k
                    buyers.append(p)
                amounts.extend([price] * (1 + len(participants)))
                minutes.extend([k] * (1 + len(participants)))
                k += 1
    users = list(referrer)
    referrals = pa.table(
        {
            "user_id": pa.array(users, pa.int64()),
            "referrer_id": pa.array([referrer[u] for u in users], pa.int64()),
            "joined_at": pa.array(
                [_T0 + dt.timedelta(minutes=joined[u]) for u in users], pa.timestamp("s")
            ),
        }
    )
    events = pa.table(
        {
            "user_id": pa.array(buyers, pa.int64()),
            "amount": pa.array(amounts, pa.int64()),
            "ts": pa.array([_T0 + dt.timedelta(minutes=m) for m in minutes], pa.timestamp("s")),
        }
    )
    return referrals, events


def twitter_cascades(path: str | os.PathLike[str]) -> pa.Table:
    """Referrals from the Twitter15/16 retweet cascades (Ma, Gao, Wong,
    ACL 2017): who passed a story to whom. ``path`` is the TSV (optionally
    gzipped) with ``cascade_id, parent_uid, child_uid, child_delay_min``.

    A user is a (cascade, uid) pair, id ``"<cascade_id>:<uid>"``; a row
    whose parent is ``ROOT`` makes its child the cascade's source (a root).
    A child listed under several parents keeps the earliest (smallest
    delay, then the first row); ``joined_at`` is the delay after the
    source. Rows where a user passes the story to themselves are left out.
    """
    import pyarrow.csv as pacsv

    t = pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(delimiter="\t"),
        convert_options=pacsv.ConvertOptions(
            column_types={
                "cascade_id": pa.string(),
                "parent_uid": pa.string(),
                "child_uid": pa.string(),
                "child_delay_min": pa.float64(),
            },
            include_columns=["cascade_id", "parent_uid", "child_uid", "child_delay_min"],
        ),
    )
    # A user passing a story to themselves is not a referral.
    t = t.filter(pc.not_equal(t["parent_uid"], t["child_uid"]))
    child = pc.binary_join_element_wise(t["cascade_id"], t["child_uid"], ":")
    root = pc.equal(t["parent_uid"], "ROOT")
    parent = pc.if_else(
        root,
        pa.scalar(None, pa.string()),
        pc.binary_join_element_wise(t["cascade_id"], t["parent_uid"], ":"),
    )
    delay = t["child_delay_min"].to_numpy()
    # Earliest row per child: sort by (child, delay, row), keep run starts.
    codes = pc.dictionary_encode(child).combine_chunks().indices.to_numpy()
    order = np.lexsort((np.arange(len(codes)), delay, codes))
    first = np.ones(len(order), dtype=bool)
    first[1:] = codes[order][1:] != codes[order][:-1]
    keep = pa.array(order[first])
    minutes = np.round(delay * 60_000).astype("int64")  # milliseconds
    return pa.table(
        {
            "user_id": child.take(keep),
            "referrer_id": parent.take(keep),
            "joined_at": pa.array(minutes, pa.int64()).take(keep).cast(pa.timestamp("ms")),
        }
    )


def edge_list(path: str | os.PathLike[str], *, undirected: bool = False) -> pa.Table:
    """``src, dst`` (int64) from a whitespace-separated edge list such as
    SNAP's files or NetHEPT: lines ``u v [p]``; ``#`` comments and a first
    line ``n m`` (two numbers where the rest have three) are skipped, a third
    column is ignored. ``undirected`` adds both directions of every edge
    (then duplicates are merged by ``SocialGraph``), as the influence
    maximization papers use NetHEPT (IMM, Tang et al. 2015, Table 2).
    """
    with open(path) as f:
        lines = [ln.split() for ln in f if ln.strip() and not ln.startswith("#")]
    if len(lines) > 1 and len(lines[0]) == 2 and len(lines[1]) == 3:
        lines = lines[1:]
    src = np.array([int(x[0]) for x in lines], dtype=np.int64)
    dst = np.array([int(x[1]) for x in lines], dtype=np.int64)
    if undirected:
        src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])
    return pa.table({"src": src, "dst": dst})
