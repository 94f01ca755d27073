"""Attribution of events that do not fit one machine, engine-neutral.

The single-machine result depends on three things no batch of events can
see alone; a distributed run computes them over all events first and hands
them to every batch, so each batch's ledger is exactly its share of the
whole one:

1. **Global rows.** Default event ids and every (ts, row) tie-break use the
   row number in the whole table: each batch gets its first row
   (``row_offset``; the partition lengths' running sum).
2. **Qualification** reads ancestors' own purchases, in any batch.
   ``"purchased"``: each user's first positive purchase time (a min per
   user, one int64 per user, broadcast). ``MinSpend(x)``: the times each
   user's running spend crosses x, up or down, with the running sum there
   (:func:`spend_flips`, after a shuffle by buyer; usually one row per
   qualified user). Between two crossings the answer cannot change, so this
   answers "spent >= x by t" exactly as the full timeline does.
3. **First N per buyer and caps per beneficiary** follow (ts, row) order
   over all events. First-N: the (buyer, ts, row) of creditable events are
   shuffled by buyer and each buyer's N smallest kept (:func:`first_n`);
   the allowed rows go back to their batches. Caps: batches leave credits
   uncapped (``skip_cap``) and add ``_row`` and ``_ts``; the ledger is then
   shuffled by beneficiary, sorted by (beneficiary, ts, row) and capped in
   one pass (:func:`cap_sorted`), then put back in (row, level) order.

Totals are sums per beneficiary of the final ledger, sorted by credit
descending, ties by id. Stats add up over batches (``capped_off`` and
``credited`` come from the cap pass). Float totals may differ from a single
machine's in the last bits (another summation order); integer and decimal
amounts are exact.

:func:`attribute_batch` is the per-batch step; :mod:`referralgraph.dask`
drives it with Dask, and a Ray ``map_batches`` or Spark ``mapInArrow``
adapter would wrap the same function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from . import _core
from .policy import MinSpend, Policy, _amounts_for

if TYPE_CHECKING:
    from .graph import ReferralGraph

__all__ = [
    "GlobalState",
    "attribute_batch",
    "cap_sorted",
    "first_n",
    "spend_flips",
    "users_table",
]

NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True)
class GlobalState:
    """What every batch needs from all events (see the module doc)."""

    #: Per user index: first positive purchase time in ns (NEVER: none).
    first_purchase: np.ndarray | None = None
    #: Per user index: (offsets uint32[n + 1], ts int64[], running spend[]).
    timeline: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


def users_table(graph: ReferralGraph) -> pd.DataFrame:
    """Per user index: has a referrer, joined_at in ns (NEVER when null);
    broadcast to batches that decide which events are creditable."""
    u = graph.users()
    joined = (
        np.asarray(u.column("joined_at").cast(pa.int64()).fill_null(NEVER))
        if "joined_at" in u.column_names
        else np.full(u.num_rows, NEVER, dtype=np.int64)
    )
    return pd.DataFrame(
        {"has_referrer": np.asarray(u.column("referrer_id").is_valid()), "joined": joined}
    )


def _ns(col: Any) -> np.ndarray:
    """A pandas datetime column as int64 ns since the epoch (UTC)."""
    return np.asarray(pd.to_datetime(col, utc=True).astype("int64"))


def creditable(
    graph: ReferralGraph,
    users: pd.DataFrame,
    frame: pd.DataFrame,
    policy: Policy,
    *,
    user_id: str,
    ts: str | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(user index (-1: unknown), creditable) per row: the buyer is known
    and has a referrer, and the event is inside the window."""
    ix = graph.index_of(pa.array(frame[user_id]))
    ixn = np.asarray(ix.fill_null(np.iinfo(np.uint32).max)).astype(np.int64)
    known = np.asarray(ix.is_valid())
    ixn[~known] = -1
    ok = known.copy()
    ok[known] = users["has_referrer"].to_numpy()[ixn[known]]
    w = policy.window_ns
    if w is not None:
        t = _ns(frame[ts]) if ts is not None else np.zeros(len(frame), dtype=np.int64)
        j = np.full(len(frame), NEVER, dtype=np.int64)
        j[known] = users["joined"].to_numpy()[ixn[known]]
        ok &= (j != NEVER) & (j <= t) & (t <= j + w)
    return ixn, ok


def first_n(rows: pd.DataFrame, n: int) -> np.ndarray:
    """The global rows among each buyer's first ``n`` creditable events in
    (ts, row) order; ``rows`` has columns buyer, ts, row and holds every
    event of the buyers it holds (after a shuffle by buyer)."""
    r = rows.sort_values(["buyer", "ts", "row"], kind="stable")
    keep = r.groupby("buyer", sort=False).cumcount().to_numpy() < n
    out: np.ndarray = r["row"].to_numpy()[keep]
    return out


def spend_flips(rows: pd.DataFrame, x: Any) -> pd.DataFrame:
    """Per user, the times the running spend crosses ``x`` (up or down) and
    the running spend there; ``rows`` (user, ts, amount) holds every event
    of the users it holds. Spend counts events with ts <= t, so events at
    the same time count together."""
    if rows.empty:
        return pd.DataFrame({"user": rows["user"], "ts": rows["ts"], "spend": rows["amount"]})
    g = rows.groupby(["user", "ts"], sort=True)["amount"].sum().reset_index()
    g["spend"] = g.groupby("user", sort=False)["amount"].cumsum()
    q = (g["spend"] >= x).to_numpy()
    first = (g["user"] != g["user"].shift()).to_numpy()
    before = np.where(first, 0 >= x, np.roll(q, 1))
    return g.loc[q != before, ["user", "ts", "spend"]]


def timeline(
    graph: ReferralGraph, flips: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`spend_flips` rows as per-user-index arrays for the engine."""
    ix = graph.index_of(pa.array(flips["user"]))
    f = flips.assign(ix=np.asarray(ix.fill_null(0)).astype(np.int64))[np.asarray(ix.is_valid())]
    f = f.sort_values(["ix", "ts"], kind="stable")
    counts = np.bincount(f["ix"].to_numpy(), minlength=graph.num_users)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.uint32)
    return offsets, f["ts"].to_numpy(np.int64), f["spend"].to_numpy()


def attribute_batch(
    graph: ReferralGraph,
    batch: pa.Table,
    policy: Policy,
    *,
    row_offset: int,
    state: GlobalState | None = None,
    allowed: np.ndarray | None = None,
    user_id: str = "user_id",
    amount: str = "amount",
    ts: str | None = "ts",
    event_id: str | None = "event_id",
) -> tuple[pa.Table, dict[str, Any]]:
    """One batch's share of the whole run's ledger (uncapped, with ``_row``
    and ``_ts``) and its stats. ``allowed``: per row of the batch, whether
    it is among its buyer's first N over all events (with a first-N policy).
    """
    from .graph import _event_args

    dist: dict[str, Any] = {"row_offset": row_offset, "skip_cap": True}
    if state is not None and state.first_purchase is not None:
        dist["first_purchase"] = pa.array(state.first_purchase)
    if state is not None and state.timeline is not None:
        o, t, s = state.timeline
        dist["timeline"] = (pa.array(o), pa.array(t), pa.array(s))
    if allowed is not None:
        dist["allowed"] = pa.array(allowed)
    has_ts = ts is not None and ts in batch.column_names
    has_id = event_id is not None and event_id in batch.column_names
    args = _event_args(user_id, amount, ts if has_ts else None, event_id if has_id else None)
    ledger, _, stats, _ = _core.attribute(
        graph._g, batch, policy, **args, on_invalid="raise", distributed=dist
    )
    return ledger, stats


def cap_sorted(frame: pd.DataFrame, cap: Any) -> pd.DataFrame:
    """Caps credits of a ledger part holding all of its beneficiaries'
    rows: sorted by (beneficiary, ts, row), capped in one pass; adds
    ``_want`` (the credit before the cap)."""
    f = frame.sort_values(["beneficiary_id", "_ts", "_row"], kind="stable")
    codes, _ = pd.factorize(f["beneficiary_id"])
    paid, _cut = _core.cap_sorted(
        pa.array(codes.astype(np.int64)), pa.array(f["credit"].to_numpy()), cap
    )
    return f.assign(_want=f["credit"], credit=paid.to_numpy())


def engine_cap(policy: Policy, amount_kind: str) -> Any:
    """The cap in the engine's units ("int" or "float" amounts)."""
    return _amounts_for(policy, amount_kind, 0)[2]


def engine_min_spend(policy: Policy, amount_kind: str) -> Any:
    q = policy.qualify
    assert isinstance(q, MinSpend)
    return _amounts_for(policy, amount_kind, 0)[1]
