"""Attribution over a Dask DataFrame of events, equal row for row to the
single-machine result (the plan: :mod:`referralgraph.distributed`).

    >>> import dask.dataframe as dd                            # doctest: +SKIP
    >>> from referralgraph import dask as rgd                  # doctest: +SKIP
    >>> r = rgd.attribute(graph, dd.read_parquet("events/"), policy)  # doctest: +SKIP
    >>> ledger, totals, stats = dask.compute(r.ledger, r.totals, r.stats)  # doctest: +SKIP

The graph goes to each worker once: with a ``distributed`` client it is
scattered to every worker (``broadcast=True``; it pickles as its compact
saved form), otherwise it is one shared key of the task graph. Passes over
the events: partition lengths; the qualification state, when the policy
has one (a group-by for ``"purchased"``, a shuffle by buyer for
``MinSpend``); first-N rows, when the policy has a limit (a shuffle by
buyer); the attribution of every partition; and, with a cap, a shuffle of
the ledger by beneficiary and a sort back into (row, level) order.

Amounts must be integers (minor units) or floats; convert decimals to
integer minor units first. Bad rows raise (``on_invalid="raise"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from . import distributed as dist
from .exceptions import SchemaError
from .policy import MinSpend, Policy

if TYPE_CHECKING:
    import dask.dataframe as dd

    from .graph import ReferralGraph

__all__ = ["DaskAttribution", "attribute"]


@dataclass(frozen=True)
class DaskAttribution:
    """Lazy results: ``ledger`` and ``totals`` as Dask DataFrames, ``stats``
    as a one-row Dask DataFrame. :meth:`compute` computes them together, so
    the shared passes run once."""

    ledger: dd.DataFrame
    totals: dd.DataFrame
    stats: dd.DataFrame

    def compute(self) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
        """(ledger, totals, stats dict), as the single-machine result's."""
        from dask.base import compute

        ledger, totals, stats = compute(self.ledger, self.totals, self.stats)
        row = stats.iloc[0]
        out = {k: row[k].item() for k in stats.columns}
        return ledger.reset_index(drop=True), totals.reset_index(drop=True), out


def _shared(obj: Any) -> Any:
    """``obj`` sent to every worker once (scattered with a distributed
    client; one shared key of the task graph otherwise)."""
    try:
        from distributed import get_client

        return get_client().scatter(obj, broadcast=True, hash=False)
    except (ImportError, ValueError):
        from dask.delayed import delayed

        return delayed(obj, pure=True)


def _each(items: list[Any]) -> list[Any]:
    """One piece per partition, each sent only where its task runs
    (scattered with a distributed client, keys of the task graph otherwise)."""
    try:
        from distributed import get_client

        return list(get_client().scatter(items, hash=False))
    except (ImportError, ValueError):
        from dask.delayed import delayed

        return [delayed(x, pure=True) for x in items]


def _table(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


def _run_part(
    frame: pd.DataFrame,
    graph: ReferralGraph,
    policy: Policy,
    offset: int,
    state: dist.GlobalState | None,
    allowed_rows: np.ndarray | None,
    names: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    allowed = None
    if allowed_rows is not None:
        rows = np.arange(offset, offset + len(frame))
        allowed = np.isin(rows, allowed_rows)
    ledger, stats = dist.attribute_batch(
        graph, _table(frame), policy, row_offset=offset, state=state, allowed=allowed, **names
    )
    return ledger.to_pandas(), stats


def _first(x: tuple[Any, Any]) -> Any:
    return x[0]


def _second(x: tuple[Any, Any]) -> Any:
    return x[1]


def _sum_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(parts[0]) if parts else {}
    for p in parts[1:]:
        for k, v in p.items():
            out[k] += v
    return out


def _first_n_part(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    return pd.DataFrame({"row": dist.first_n(frame, n)})


def attribute(
    graph: ReferralGraph,
    events: dd.DataFrame,
    policy: Policy,
    *,
    user_id: str = "user_id",
    amount: str = "amount",
    ts: str | None = "ts",
    event_id: str | None = "event_id",
) -> DaskAttribution:
    """Attributes a Dask DataFrame of events; see the module doc. Runs the
    global passes (partition lengths, qualification state, first-N rows,
    capped credits) eagerly and returns the rest lazily."""
    import dask.dataframe as dd
    from dask.delayed import delayed

    if not isinstance(policy, Policy):
        raise TypeError(f"policy must be a referralgraph.Policy, not {type(policy).__name__}")
    kind = "float" if pd.api.types.is_float_dtype(events[amount].dtype) else "int"
    if kind == "int" and not pd.api.types.is_integer_dtype(events[amount].dtype):
        raise SchemaError(
            f"column {amount} has type {events[amount].dtype}; the Dask path takes integer "
            "(minor units) or float amounts"
        )
    has_ts = ts is not None and ts in events.columns
    ts_col = ts if has_ts else None
    names = {"user_id": user_id, "amount": amount, "ts": ts_col, "event_id": event_id}
    g = _shared(graph)

    # Global rows.
    lengths = events.map_partitions(len).compute()
    offsets = np.concatenate([[0], np.cumsum(np.asarray(lengths))[:-1]]).astype(np.int64)
    with_rows = events.map_partitions(
        lambda f, partition_info=None: f.assign(
            _row=np.arange(len(f), dtype=np.int64) + offsets[partition_info["number"]]
        ),
        meta={**events.dtypes.to_dict(), "_row": np.int64},
    )

    def ts_ns(frame: pd.DataFrame) -> np.ndarray:
        return dist._ns(frame[ts_col]) if ts_col else np.zeros(len(frame), dtype=np.int64)

    # Qualification over all events.
    state = None
    if policy.qualify == "purchased":
        bought = events[events[amount] > 0]
        firsts = bought.map_partitions(
            lambda f: pd.DataFrame({"user": f[user_id], "ts": ts_ns(f)}),
            meta={"user": events[user_id].dtype, "ts": np.int64},
        )
        first = firsts.groupby("user")["ts"].min().compute()
        fp = np.full(graph.num_users, dist.NEVER, dtype=np.int64)
        ix = graph.index_of(pa.array(first.index.to_numpy()))
        ok = np.asarray(ix.is_valid())
        fp[np.asarray(ix.fill_null(0))[ok]] = first.to_numpy()[ok]
        state = dist.GlobalState(first_purchase=fp)
    elif isinstance(policy.qualify, MinSpend):
        x = dist.engine_min_spend(policy, kind)
        spent = events.map_partitions(
            lambda f: pd.DataFrame({"user": f[user_id], "ts": ts_ns(f), "amount": f[amount]}),
            meta={"user": events[user_id].dtype, "ts": np.int64, "amount": events[amount].dtype},
        )
        flips = (
            spent.shuffle(on="user")
            .map_partitions(
                dist.spend_flips,
                x,
                meta={"user": events[user_id].dtype, "ts": np.int64, "spend": events[amount].dtype},
            )
            .compute()
        )
        state = dist.GlobalState(timeline=dist.timeline(graph, flips))

    # First N per buyer over all events.
    allowed_rows = None
    if policy.max_events_per_buyer is not None:
        users = dist.users_table(graph)

        def creditable_rows(frame: pd.DataFrame) -> pd.DataFrame:
            ix, ok = dist.creditable(graph, users, frame, policy, user_id=user_id, ts=ts_col)
            return pd.DataFrame(
                {"buyer": ix[ok], "ts": ts_ns(frame)[ok], "row": frame["_row"].to_numpy()[ok]}
            )

        cand = with_rows.map_partitions(
            creditable_rows, meta={"buyer": np.int64, "ts": np.int64, "row": np.int64}
        )
        n = policy.max_events_per_buyer
        kept = cand.shuffle(on="buyer").map_partitions(_first_n_part, n, meta={"row": np.int64})
        allowed_rows = np.sort(kept["row"].compute().to_numpy())

    # Attribution, partition by partition.
    def allowed_for(i: int) -> np.ndarray | None:
        if allowed_rows is None:
            return None
        lo, hi = int(offsets[i]), int(offsets[i]) + int(lengths.iloc[i])
        return allowed_rows[np.searchsorted(allowed_rows, lo) : np.searchsorted(allowed_rows, hi)]

    shared_state = _shared(state)
    allowed = (
        [None] * len(offsets)
        if allowed_rows is None
        else _each([allowed_for(i) for i in range(len(offsets))])
    )
    runs = [
        delayed(_run_part, nout=2)(
            part, g, policy, int(offsets[i]), shared_state, allowed[i], names
        )
        for i, part in enumerate(events.to_delayed())
    ]
    meta = _run_part(events._meta, graph, policy, 0, None, None, names)[0]
    parts = [r[0] for r in runs]
    stats = delayed(_sum_stats)([r[1] for r in runs])

    cap = dist.engine_cap(policy, kind)
    if cap is not None:
        # Cap per beneficiary over all its credits, then send the credits
        # that changed back to their partitions (no global re-sort).
        uncapped = dd.from_delayed(parts, meta=meta, verify_meta=False)
        capped = uncapped.shuffle(on="beneficiary_id").map_partitions(
            dist.cap_sorted, cap, meta=meta.assign(_want=meta["credit"])
        )
        changed = capped[capped["credit"] != capped["_want"]][["_row", "level", "credit", "_want"]]
        updates = changed.compute().sort_values(["_row", "level"], kind="stable")
        cut = (updates["_want"] - updates["credit"]).sum()
        rows = updates["_row"].to_numpy()

        def slice_for(i: int) -> pd.DataFrame:
            lo, hi = int(offsets[i]), int(offsets[i]) + int(lengths.iloc[i])
            return updates.iloc[np.searchsorted(rows, lo) : np.searchsorted(rows, hi)]

        pieces = _each([slice_for(i) for i in range(len(parts))])
        parts = [delayed(_apply_caps)(part, pieces[i]) for i, part in enumerate(parts)]
        stats = delayed(_with_cap)(stats, cut.item() if hasattr(cut, "item") else cut)
    ledger = dd.from_delayed(parts, meta=meta, verify_meta=False).drop(columns=["_row", "_ts"])
    totals = _totals(ledger, policy.levels)
    stats_frame = dd.from_delayed(
        [delayed(lambda s: pd.DataFrame([s]))(stats)],
        meta=_stats_meta(kind),
        verify_meta=False,
    )
    return DaskAttribution(ledger=ledger, totals=totals, stats=stats_frame)


def _apply_caps(part: pd.DataFrame, updates: pd.DataFrame) -> pd.DataFrame:
    """Sets the capped credits of ``updates`` (_row, level, credit) in a
    partition's ledger (in (row, level) order, as the updates)."""
    if updates.empty:
        return part
    key = part["_row"].to_numpy() * 256 + part["level"].to_numpy().astype(np.int64)
    ukey = updates["_row"].to_numpy() * 256 + updates["level"].to_numpy().astype(np.int64)
    at = np.searchsorted(key, ukey)
    credit = part["credit"].to_numpy().copy()
    credit[at] = updates["credit"].to_numpy()
    return part.assign(credit=credit)


def _stats_meta(kind: str) -> pd.DataFrame:
    money = np.float64 if kind == "float" else np.int64
    cols = {
        "events": np.int64,
        "creditable_events": np.int64,
        "unknown_buyer_events": np.int64,
        "ledger_rows": np.int64,
        "credited": money,
        "forfeited": money,
        "capped_off": money,
    }
    return pd.DataFrame({k: pd.Series(dtype=v) for k, v in cols.items()})


def _with_cap(stats: dict[str, Any], cut: Any) -> dict[str, Any]:
    return {**stats, "capped_off": cut, "credited": stats["credited"] - cut}


def _totals(ledger: dd.DataFrame, levels: int) -> dd.DataFrame:
    """Per beneficiary: credit, events, credit_level_1..D; sorted by credit
    descending, ties by id (one partition: one row per beneficiary)."""
    cols = {
        f"credit_level_{k}": ledger["credit"].where(ledger["level"] == k, 0)
        for k in range(1, levels + 1)
    }
    per = ledger.assign(events=1, **cols)
    agg = per.groupby("beneficiary_id")[["credit", "events", *cols]].sum().reset_index()

    def order(f: pd.DataFrame) -> pd.DataFrame:
        return f.sort_values(
            ["credit", "beneficiary_id"], ascending=[False, True], kind="stable"
        ).reset_index(drop=True)

    return agg.repartition(npartitions=1).map_partitions(order)
