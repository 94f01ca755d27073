"""The semantics of attribution, written to be read, not to be fast.

This follows DESIGN.md "Attribution" rule by rule; the Rust engine is tested
against it. Inputs are plain Python lists of dicts (or pyarrow tables, via
``.to_pylist()``); amounts are ints (minor units or unscaled decimals) or
floats; times are any comparable values (or None when absent).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Result", "attribute", "credit_of"]


def credit_of(amount: int | float, ppm: int) -> int | float:
    """Rule 5: trunc(amount * ppm / 1e6) for integers, amount * ppm / 1e6 for floats."""
    if isinstance(amount, float):
        return amount * ppm / 1e6
    q = abs(amount) * ppm // 1_000_000
    return q if amount >= 0 else -q


@dataclass
class Result:
    ledger: list[dict[str, Any]] = field(default_factory=list)
    totals: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


def attribute(
    referrals: list[dict[str, Any]],
    events: list[dict[str, Any]],
    *,
    rates: list[float],
    window: Any = None,
    max_events_per_buyer: int | None = None,
    qualify: str | int | float | None = None,
    compression: bool = False,
    cap_per_beneficiary: int | float | None = None,
) -> Result:
    """Attributes ``events`` (keys: user_id, amount, ts?, event_id?) over
    ``referrals`` (keys: user_id, referrer_id, joined_at?).

    ``qualify`` is None, ``"purchased"`` or a number (MinSpend). ``window``
    is added to ``joined_at`` (a timedelta for datetimes, an int for ints).
    """
    parent: dict[Any, Any] = {}
    joined: dict[Any, Any] = {}
    for r in referrals:
        parent[r["user_id"]] = r["referrer_id"]
        joined[r["user_id"]] = r.get("joined_at")
    for r in referrals:  # rule: a referrer without a row is a root
        if r["referrer_id"] is not None and r["referrer_id"] not in parent:
            parent[r["referrer_id"]] = None
            joined[r["referrer_id"]] = None
    ppm = [round(x * 1e6) for x in rates]
    has_ts = any("ts" in e for e in events)
    ts = [e.get("ts") if has_ts else 0 for e in events]
    order = sorted(range(len(events)), key=lambda i: (ts[i], i))
    zero = 0.0 if any(isinstance(e["amount"], float) for e in events) else 0

    # Rule 2: creditable events, and each buyer's first N of them.
    def creditable(i: int) -> bool:
        b = events[i]["user_id"]
        if b not in parent or parent[b] is None:
            return False
        if window is not None:
            j = joined.get(b)
            return j is not None and j <= ts[i] <= j + window
        return True

    eligible = [False] * len(events)
    seen: dict[Any, int] = defaultdict(int)
    for i in order:
        if creditable(i):
            b = events[i]["user_id"]
            eligible[i] = max_events_per_buyer is None or seen[b] < max_events_per_buyer
            seen[b] += 1

    # Rule 3: qualification of ancestor a at time t.
    def qualified(a: Any, t: Any) -> bool:
        if qualify is None:
            return True
        mine = [k for k in range(len(events)) if events[k]["user_id"] == a and ts[k] <= t]
        if isinstance(qualify, str):  # "purchased"
            return any(events[k]["amount"] > 0 for k in mine)
        return bool(sum((events[k]["amount"] for k in mine), zero) >= qualify)

    # Rules 1, 4, 5: walk the chain; 7: ledger in input order, then level.
    out = Result()
    forfeited = zero
    for i, e in enumerate(events):
        if not eligible[i]:
            continue
        a, level = parent[e["user_id"]], 1
        while a is not None and level <= len(ppm):
            c = credit_of(e["amount"], ppm[level - 1])
            if qualified(a, ts[i]):
                out.ledger.append(
                    {
                        "event_id": e.get("event_id", i),
                        "buyer_id": e["user_id"],
                        "beneficiary_id": a,
                        "level": level,
                        "amount": e["amount"],
                        "rate": ppm[level - 1] / 1e6,
                        "credit": c,
                        "_row": i,
                    }
                )
                level += 1
            elif not compression:
                forfeited += c
                level += 1
            a = parent[a]

    # Rule 6: caps, in event order (ts, row).
    capped_off = zero
    if cap_per_beneficiary is not None:
        rank = {i: k for k, i in enumerate(order)}
        running: dict[Any, Any] = defaultdict(lambda: zero)
        for row in sorted(out.ledger, key=lambda x: rank[x["_row"]]):
            want = row["credit"]
            b = row["beneficiary_id"]
            paid = min(want, cap_per_beneficiary - running[b]) if want > 0 else want
            running[b] += paid
            capped_off += want - paid
            row["credit"] = paid
    for row in out.ledger:
        del row["_row"]

    # Rule 7: totals, a leaderboard.
    tot: dict[Any, dict[str, Any]] = {}
    for row in out.ledger:
        t = tot.setdefault(
            row["beneficiary_id"],
            {"beneficiary_id": row["beneficiary_id"], "credit": zero, "events": 0}
            | {f"credit_level_{k}": zero for k in range(1, len(ppm) + 1)},
        )
        t["credit"] += row["credit"]
        t["events"] += 1
        t[f"credit_level_{row['level']}"] += row["credit"]
    out.totals = sorted(tot.values(), key=lambda t: (-t["credit"], t["beneficiary_id"]))

    # Rule 8: stats.
    out.stats = {
        "events": len(events),
        "creditable_events": sum(1 for i in range(len(events)) if creditable(i)),
        "unknown_buyer_events": sum(1 for e in events if e["user_id"] not in parent),
        "ledger_rows": len(out.ledger),
        "credited": sum((r["credit"] for r in out.ledger), zero),
        "forfeited": forfeited,
        "capped_off": capped_off,
    }
    return out
