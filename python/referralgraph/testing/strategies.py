"""Hypothesis strategies for referral programs: referral tables (valid and
invalid), events and policies. For users' own test suites, and ours.

>>> from hypothesis import given
>>> from referralgraph.testing import strategies as rgst
>>> @given(rgst.programs())
... def test_my_pipeline(program):
...     referrals, events, policy = program
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pyarrow as pa
from hypothesis import strategies as st

from ..policy import MinSpend, Policy, Qualify

__all__ = ["events", "invalid_referral_tables", "policies", "programs", "referral_tables"]

EPOCH = dt.datetime(2024, 1, 1)


def _id(i: int, id_type: str) -> int | str:
    return f"u{i}" if id_type == "string" else i * 7 + 3


@st.composite
def referral_tables(
    draw: st.DrawFn,
    *,
    max_users: int = 25,
    id_type: str | None = None,
    implicit_roots: bool = True,
) -> pa.Table:
    """A valid referrals table (a forest, rows in any order): user_id,
    referrer_id, joined_at (timestamp[us], ties likely), channel."""
    id_type = id_type or draw(st.sampled_from(["int", "string"]))
    n = draw(st.integers(1, max_users))
    parents: list[int | None] = [None]
    for i in range(1, n):
        parents.append(draw(st.one_of(st.none(), st.integers(0, i - 1))))
    extra = draw(st.integers(0, 2)) if implicit_roots else 0
    users = [_id(i, id_type) for i in range(n)]
    refs: list[int | str | None] = []
    for p in parents:
        if p is None and extra and draw(st.booleans()):
            refs.append(_id(n + draw(st.integers(0, extra - 1)), id_type))
        else:
            refs.append(None if p is None else users[p])
    joined = [EPOCH + dt.timedelta(hours=draw(st.integers(0, 48))) for _ in range(n)]
    channel = [draw(st.sampled_from(["ads", "store", None])) if r is None else None for r in refs]
    perm = draw(st.permutations(range(n)))
    ty = pa.string() if id_type == "string" else pa.int64()
    return pa.table(
        {
            "user_id": pa.array([users[i] for i in perm], ty),
            "referrer_id": pa.array([refs[i] for i in perm], ty),
            "joined_at": pa.array([joined[i] for i in perm], pa.timestamp("us")),
            "channel": pa.array([channel[i] for i in perm], pa.string()),
        }
    )


@st.composite
def invalid_referral_tables(draw: st.DrawFn, *, max_users: int = 20) -> tuple[pa.Table, str]:
    """A referrals table with one kind of problem, and that kind:
    "null_id", "duplicate_user", "self_referral" or "cycle"."""
    t = draw(referral_tables(max_users=max_users, id_type="int", implicit_roots=False))
    rows = t.to_pylist()
    kind = draw(st.sampled_from(["null_id", "duplicate_user", "self_referral", "cycle"]))
    i = draw(st.integers(0, len(rows) - 1))
    if kind == "null_id":
        rows[i]["user_id"] = None
    elif kind == "duplicate_user":
        rows.append(dict(rows[i]))
    elif kind == "self_referral":
        rows[i]["referrer_id"] = rows[i]["user_id"]
    else:
        a, b = 10_001, 10_002
        rows += [
            {**rows[0], "user_id": a, "referrer_id": b},
            {**rows[0], "user_id": b, "referrer_id": a},
        ]
    return pa.Table.from_pylist(rows, schema=t.schema), kind


@st.composite
def events(
    draw: st.DrawFn,
    referrals: pa.Table,
    *,
    max_events: int = 30,
    amount_type: str = "int64",
    with_ts: bool = True,
    with_event_id: bool | None = None,
) -> pa.Table:
    """Events of users of ``referrals`` (and some unknown buyers): amounts
    with zeros and refunds, timestamps with ties, optional event ids."""
    known = referrals.column("user_id").to_pylist()
    is_str = pa.types.is_string(referrals.schema.field("user_id").type)
    unknown = ["nobody"] if is_str else [-1]
    m = draw(st.integers(0, max_events))
    buyers = [draw(st.sampled_from(known + unknown)) for _ in range(m)]
    cents = [draw(st.sampled_from([0, 1, 99, 5000, 12345, -250, -5000, 999_999])) for _ in range(m)]
    cols: dict[str, Any] = {"user_id": buyers}
    if amount_type == "int64":
        cols["amount"] = pa.array(cents, pa.int64())
    elif amount_type == "float64":
        cols["amount"] = pa.array([c / 100 for c in cents], pa.float64())
    else:
        cols["amount"] = pa.array([Decimal(c).scaleb(-2) for c in cents], pa.decimal128(12, 2))
    if with_ts:
        hours = [draw(st.integers(0, 60)) for _ in range(m)]
        cols["ts"] = pa.array([EPOCH + dt.timedelta(hours=h) for h in hours], pa.timestamp("us"))
    if with_event_id if with_event_id is not None else draw(st.booleans()):
        cols["event_id"] = pa.array([f"e{k}" for k in range(m)], pa.string())
    ty = referrals.schema.field("user_id").type
    cols["user_id"] = pa.array(buyers, ty)
    return pa.table(cols)


@st.composite
def policies(draw: st.DrawFn, *, with_window: bool = True, amount_type: str = "int64") -> Policy:
    """Any valid policy: 1 to 4 levels, and every option on or off."""
    levels = draw(st.integers(1, 4))
    rates = [draw(st.sampled_from([0.0, 0.01, 0.02, 0.05, 0.1, 0.25])) for _ in range(levels)]
    scale = 100 if amount_type != "int64" else 1

    def money(x: int) -> int | float | Decimal:
        if amount_type == "int64":
            return x
        return x / scale if amount_type == "float64" else Decimal(x).scaleb(-2)

    qualify: Qualify = draw(
        st.sampled_from(
            [None, "purchased", MinSpend(money(draw(st.sampled_from([1, 5000, 10000]))))]
        )
    )
    return Policy(
        rates=rates,
        window=draw(st.sampled_from([None, "12h", "1d"])) if with_window else None,
        max_events_per_buyer=draw(st.sampled_from([None, 1, 2])),
        qualify=qualify,
        compression=draw(st.booleans()),
        cap_per_beneficiary=draw(st.sampled_from([None, money(0), money(500), money(2000)])),
    )


@st.composite
def programs(
    draw: st.DrawFn, *, amount_type: str | None = None
) -> tuple[pa.Table, pa.Table, Policy]:
    """(referrals, events, policy), all valid."""
    amount_type = amount_type or draw(st.sampled_from(["int64", "float64", "decimal128"]))
    referrals = draw(referral_tables())
    evs = draw(events(referrals, amount_type=amount_type))
    return referrals, evs, draw(policies(amount_type=amount_type))
