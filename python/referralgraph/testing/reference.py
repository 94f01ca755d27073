"""The semantics of attribution and of the program analytics (reach,
scores, pyramid, channels, metrics), written to be read, not to be fast.

This follows DESIGN.md "Attribution" rule by rule and the definitions in
:mod:`referralgraph.program`; the Rust engine is tested against it. Inputs
are plain Python lists of dicts (or pyarrow tables, via ``.to_pylist()``);
amounts are ints (minor units or unscaled decimals) or
floats; times are any comparable values (or None when absent).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Result",
    "attribute",
    "channels",
    "credit_of",
    "metrics",
    "pyramid",
    "reach",
    "scores",
]


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


# ---------------------------------------------------------------------------
# Reach, scores, pyramid, channels, metrics (referralgraph.program).


def _forest(referrals: list[dict[str, Any]]) -> tuple[dict[Any, Any], dict[Any, list[Any]]]:
    """(parent of every user, children of every user); implicit roots added."""
    parent: dict[Any, Any] = {r["user_id"]: r["referrer_id"] for r in referrals}
    for r in referrals:
        if r["referrer_id"] is not None and r["referrer_id"] not in parent:
            parent[r["referrer_id"]] = None
    children: dict[Any, list[Any]] = {u: [] for u in parent}
    for u, p in parent.items():
        if p is not None:
            children[p].append(u)
    return parent, children


def _chain(parent: dict[Any, Any], u: Any) -> list[Any]:
    """u's ancestors, nearest first."""
    out = []
    while parent[u] is not None:
        u = parent[u]
        out.append(u)
    return out


def reach(referrals: list[dict[str, Any]], max_depth: int) -> dict[Any, dict[str, Any]]:
    """Per user id: depth, root_id, direct, level_1..level_K, descendants, height."""
    parent, children = _forest(referrals)
    out = {
        u: {"depth": 0, "root_id": u, "direct": len(children[u]), "descendants": 0, "height": 0}
        | {f"level_{k}": 0 for k in range(1, max_depth + 1)}
        for u in parent
    }
    for u in parent:
        up = _chain(parent, u)
        out[u]["depth"] = len(up)
        out[u]["root_id"] = up[-1] if up else u
        for k, a in enumerate(up, start=1):
            if k <= max_depth:
                out[a][f"level_{k}"] += 1
            out[a]["descendants"] += 1
            out[a]["height"] = max(out[a]["height"], k)
    return out


def _own(events: list[dict[str, Any]], users: Any) -> tuple[dict[Any, int], dict[Any, Any]]:
    zero = 0.0 if any(isinstance(e["amount"], float) for e in events) else 0
    orders: dict[Any, int] = {u: 0 for u in users}
    amount: dict[Any, Any] = {u: zero for u in users}
    for e in events:
        if e["user_id"] in orders:
            orders[e["user_id"]] += e["amount"] > 0
            amount[e["user_id"]] += e["amount"]
    return orders, amount


def scores(
    referrals: list[dict[str, Any]],
    events: list[dict[str, Any]],
    *,
    max_depth: int = 3,
    weights: list[float] | None = None,
    tiers: tuple[float, float] = (0.01, 0.09),
    scale: int = 0,
) -> dict[Any, dict[str, Any]]:
    """Per user id: the columns of ``ReferralGraph.scores``. ``scale``: the
    decimal scale of unscaled integer amounts (the score is scaled)."""
    import math

    parent, children = _forest(referrals)
    weights = [0.5**k for k in range(max_depth)] if weights is None else weights
    orders, amount = _own(events, parent)
    down: dict[Any, list[Any]] = {u: [amount[u] * 0 for _ in range(max_depth)] for u in parent}
    desc = {u: 0 for u in parent}
    for u in parent:
        for k, a in enumerate(_chain(parent, u), start=1):
            desc[a] += 1
            if k <= max_depth:
                down[a][k - 1] += amount[u]
    out: dict[Any, dict[str, Any]] = {}
    for u in parent:
        direct = len(children[u])
        converted = sum(1 for c in children[u] if orders[c] > 0)
        weighted = float(amount[u])
        for w, x in zip(weights, down[u], strict=True):
            weighted += w * float(x)
        out[u] = {
            "own_orders": orders[u],
            "own_amount": amount[u],
            "repeat_buyer": orders[u] >= 2,
            "direct": direct,
            "direct_converted": converted,
            "conversion_rate": converted / direct if direct else None,
            "descendants": desc[u],
            "downstream_amount": sum(down[u], amount[u] * 0),
            "score": weighted * 10.0**-scale,
            "tier": "dormant",
        }
    buyers = sorted((u for u in parent if orders[u] > 0), key=lambda u: (-out[u]["score"], u))
    core_ppm, adv_ppm = round(tiers[0] * 1e6), round(tiers[1] * 1e6)
    n_core = math.ceil(core_ppm * len(buyers) / 1_000_000)
    n_top = math.ceil((core_ppm + adv_ppm) * len(buyers) / 1_000_000)
    for rank, u in enumerate(buyers):
        out[u]["tier"] = "core" if rank < n_core else "advocate" if rank < n_top else "active"
    return out


def pyramid(
    referrals: list[dict[str, Any]], events: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """One row per depth: depth, users (and with events buyers, amount)."""
    parent, _ = _forest(referrals)
    depth = {u: len(_chain(parent, u)) for u in parent}
    rows = [{"depth": d, "users": 0} for d in range(max(depth.values(), default=-1) + 1)]
    for u in parent:
        rows[depth[u]]["users"] += 1
    if events is not None:
        orders, amount = _own(events, parent)
        zero = next(iter(amount.values())) * 0 if amount else 0
        for r in rows:
            r["buyers"], r["amount"] = 0, zero
        for u in parent:
            rows[depth[u]]["buyers"] += orders[u] > 0
            rows[depth[u]]["amount"] += amount[u]
    return rows


def channels(
    referrals: list[dict[str, Any]], events: list[dict[str, Any]]
) -> dict[Any, dict[str, Any]]:
    """Per root channel (None: no channel): roots, users, buyers,
    amount_roots, amount_descendants."""
    parent, _ = _forest(referrals)
    channel = {r["user_id"]: r.get("channel") for r in referrals}
    orders, amount = _own(events, parent)
    out: dict[Any, dict[str, Any]] = {}
    for u in parent:
        up = _chain(parent, u)
        root = up[-1] if up else u
        zero = amount[u] * 0
        row = out.setdefault(
            channel.get(root),
            {"roots": 0, "users": 0, "buyers": 0, "amount_roots": zero, "amount_descendants": zero},
        )
        row["users"] += 1
        row["buyers"] += orders[u] > 0
        if root == u:
            row["roots"] += 1
            row["amount_roots"] += amount[u]
        else:
            row["amount_descendants"] += amount[u]
    return out


def metrics(
    referrals: list[dict[str, Any]], events: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The counts and ratios of ``ReferralGraph.metrics`` (join delays in
    whatever unit ``joined_at`` has; ``median_join_delay`` is a plain median)."""
    import statistics

    parent, _ = _forest(referrals)
    joined: dict[Any, Any] = {r["user_id"]: r.get("joined_at") for r in referrals}
    users, referred = len(parent), sum(1 for p in parent.values() if p is not None)
    roots = users - referred
    delays = [
        joined[u] - joined[p]
        for u, p in parent.items()
        if p is not None and joined.get(u) is not None and joined.get(p) is not None
    ]
    hist = [r["users"] for r in pyramid(referrals)]
    out: dict[str, Any] = {
        "users": users,
        "roots": roots,
        "referred_users": referred,
        "k_factor": referred / users if users else None,
        "viral_multiplier": users / roots if roots else None,
        "median_join_delay": statistics.median(delays) if delays else None,
        "join_pairs": len(delays),
        "depth_histogram": hist,
    }
    if events is not None:
        orders, _ = _own(events, parent)
        buyers = [u for u in parent if orders[u] > 0]
        repeat = sum(1 for u in buyers if orders[u] >= 2)
        invitees = sum(1 for u in buyers if parent[u] is not None and orders[parent[u]] > 0)
        out |= {
            "events": len(events),
            "unknown_buyer_events": sum(1 for e in events if e["user_id"] not in parent),
            "buyers": len(buyers),
            "repeat_buyers": repeat,
            "buyer_k_factor": invitees / len(buyers) if buyers else None,
            "repeat_purchase_rate": repeat / len(buyers) if buyers else None,
        }
    return out
