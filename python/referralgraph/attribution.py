"""Attribution results and sessions (the Python face of the Rust engine)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa

from . import _core
from .exceptions import InvalidInputError

__all__ = ["AttributionResult", "Session", "to_ns"]


@dataclass(frozen=True)
class AttributionResult:
    """What ``ReferralGraph.attribute`` returns.

    - ``ledger``: one row per paid level, in input event order, then level:
      event_id, buyer_id, beneficiary_id, level (uint8), amount, rate, credit.
    - ``totals``: one row per beneficiary (a leaderboard, by credit
      descending, ties by id): beneficiary_id, credit, events,
      credit_level_1 .. credit_level_D.
    - ``stats``: events, creditable_events, unknown_buyer_events,
      ledger_rows, credited, forfeited, capped_off.
    - ``issues``: rows left out with ``on_invalid="drop"``.
    """

    ledger: pa.Table
    totals: pa.Table
    stats: dict[str, Any]
    issues: pa.Table


def to_ns(ts: Any) -> int | None:
    """A timestamp as nanoseconds since the epoch (UTC): datetime (naive =
    UTC), date, numpy.datetime64, pandas.Timestamp, or an int (already ns)."""
    if ts is None:
        return None
    if isinstance(ts, bool):
        raise TypeError("ts must be a timestamp, not a bool")
    if isinstance(ts, int):
        return ts
    if hasattr(ts, "value") and type(ts).__name__ == "Timestamp":  # pandas
        return int(ts.value)
    if isinstance(ts, pa.TimestampScalar):
        value: Any = ts.as_py()
        return to_ns(value) if ts.is_valid else None
    if type(ts).__name__ == "datetime64":
        import numpy as np

        return int(np.datetime64(ts, "ns").astype(np.int64))
    if isinstance(ts, dt.datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=dt.UTC)
        delta = ts - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return int((delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000)
    if isinstance(ts, dt.date):
        return (ts - dt.date(1970, 1, 1)).days * 86_400 * 10**9
    raise TypeError(f"ts must be a timestamp, not {type(ts).__name__}")


class Session:
    """Attributes one event at a time with the batch semantics; keeps the
    state (qualification spend, first-N counts, running cap totals) in
    Rust. Thread-safe: share one session between request handlers.

    Events must arrive in time order: one older than an event already seen
    raises InvalidInputError.
    """

    __slots__ = ("_s",)

    def __init__(self, inner: _core.Session) -> None:
        self._s = inner

    @property
    def amount_kind(self) -> str:
        """ "int", "decimal" or "float": the type amounts are taken in."""
        return self._s.amount_kind[0]

    def attribute(
        self,
        user_id: int | str,
        amount: int | float | Decimal,
        ts: Any = None,
        event_id: Any = None,
    ) -> list[tuple[int | str, int, Any]]:
        """Credits one purchase (or refund, when negative): a list of
        (beneficiary_id, level, credit), level 1 first. ``event_id`` is
        accepted for symmetry with the batch API and not used."""
        del event_id
        kind, scale = self._s.amount_kind
        value: int | float
        if kind == "float":
            value = float(amount)
        elif kind == "decimal":
            d = amount if isinstance(amount, Decimal) else Decimal(amount)
            unscaled = d.scaleb(scale)
            if unscaled != unscaled.to_integral_value():
                raise InvalidInputError(f"amount {amount} has more than {scale} decimal places")
            value = int(unscaled)
        else:
            if isinstance(amount, float) or isinstance(amount, Decimal):
                if amount != int(amount):
                    raise InvalidInputError(
                        f"amount {amount} is not a whole number of minor units (int64 amounts)"
                    )
            value = int(amount)
        return self._s.attribute(user_id, value, to_ns(ts))
