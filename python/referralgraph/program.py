"""Reach, scores, pyramid, channels and metrics: the Python side of the
program analytics (argument checks, ratios, the spend join). The per-user
work happens in Rust (``referralgraph._core``).

Definitions (one sentence each; DESIGN.md "Reach and scores"):

- ``level_k``: users exactly k referral levels below a user; ``direct`` is
  ``level_1``; ``descendants`` counts all levels; ``height`` is the longest
  path down (0 for a user who referred nobody); a root has ``depth`` 0.
- ``own_orders``: the user's events with a positive amount; ``own_amount``:
  the sum of all the user's amounts, refunds included; a *buyer* has at
  least one order; ``repeat_buyer``: two orders or more.
- ``direct_converted``: direct invitees who are buyers; ``conversion_rate``:
  direct_converted / direct (null when direct is 0).
- ``downstream_amount``: the own_amount of all descendants within
  ``max_depth`` levels.
- ``score`` = own_amount + sum over k = 1..K of weights[k] × (own_amount of
  the descendants exactly k levels below), in the amount's unit (decimals
  scaled); weights default to 1, 1/2, 1/4, ... (each level counts half as
  much as the one above it).
- ``tier``: buyers ranked by score descending, ties by id ascending; the
  first ceil(core × buyers) are ``core``, up to ceil((core + advocate) ×
  buyers) ``advocate``, other buyers ``active``; users without an order are
  ``dormant``. Defaults: core = 1%, advocate = 9%.
- ``k_factor``: referred users per user (users with a referrer / users).
- ``buyer_k_factor``: converted invitees per converted user (buyers whose
  referrer is a buyer / buyers).
- ``median_join_delay``: the median, over referrals where both sides have a
  ``joined_at``, of the referee's join time minus the referrer's (the mean
  of the middle two for an even count).
- ``repeat_purchase_rate``: repeat buyers / buyers.
- ``viral_multiplier``: users in the trees of a set of roots / those roots.
- ``roi`` (channels): amount from the channel's roots and their descendants
  / the channel's spend (30.0 means "1:30"), spend in the amount's unit.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ._arrow import as_stream

__all__ = ["DEFAULT_TIERS", "default_weights"]

DEFAULT_TIERS = (0.01, 0.09)


def default_weights(max_depth: int) -> list[float]:
    """1, 1/2, 1/4, ...: each level counts half as much as the one above."""
    return [0.5**k for k in range(max_depth)]


def check_depth(max_depth: int) -> int:
    if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 0:
        raise ValueError(f"max_depth must be an int >= 0, not {max_depth!r}")
    return max_depth


def check_weights(weights: Sequence[float] | None, max_depth: int) -> list[float]:
    if weights is None:
        return default_weights(max_depth)
    w = [float(x) for x in weights]
    if len(w) != max_depth:
        raise ValueError(
            f"weights has {len(w)} values for max_depth={max_depth}; give one per level"
        )
    if not all(math.isfinite(x) and x >= 0 for x in w):
        raise ValueError(f"weights must be finite and >= 0, not {list(weights)!r}")
    return w


def tier_ppm(tiers: tuple[float, float]) -> tuple[int, int]:
    """(core, advocate) shares of buyers as parts per million."""
    try:
        core, advocate = (float(x) for x in tiers)
    except (TypeError, ValueError):
        raise ValueError(f"tiers must be (core, advocate) shares, not {tiers!r}") from None
    if not (0 <= core <= 1 and 0 <= advocate <= 1 and core + advocate <= 1 + 1e-12):
        raise ValueError(
            f"tiers shares must be in [0, 1] and sum to at most 1, not {(core, advocate)!r}"
        )
    c, a = round(core * 1e6), round(advocate * 1e6)
    return c, min(a, 1_000_000 - c)


def with_attenuation(pyramid: pa.Table) -> pa.Table:
    """Adds ``attenuation``: users one level up per user at this depth."""
    users = pyramid.column("users").to_pylist()
    att = [users[d - 1] / users[d] if d and users[d] else None for d in range(len(users))]
    return pyramid.append_column("attenuation", pa.array(att, pa.float64()))


def finish_channels(table: pa.Table, spend: Any, channel: str, spend_column: str) -> pa.Table:
    """Adds viral_multiplier and amount; with a spend table, spend and roi."""
    users = pc.cast(table.column("users"), pa.float64())
    roots = pc.cast(table.column("roots"), pa.float64())
    table = table.append_column("viral_multiplier", pc.divide(users, roots))
    amount = pc.add_checked(table.column("amount_roots"), table.column("amount_descendants"))
    table = table.append_column("amount", amount)
    if spend is None:
        return table
    s = pa.table(as_stream(spend, "spend"))
    for name in (channel, spend_column):
        if name not in s.column_names:
            from .exceptions import SchemaError

            raise SchemaError(f"the spend table has no column {name!r} (columns: {s.column_names})")
    by_channel: dict[Any, float] = {}
    for k, v in zip(s.column(channel).to_pylist(), s.column(spend_column).to_pylist(), strict=True):
        if v is not None:
            by_channel[k] = by_channel.get(k, 0.0) + float(v)
    names = table.column("channel").to_pylist()
    spent = [by_channel.get(k) for k in names]
    total = pc.cast(amount, pa.float64()).to_pylist()
    roi = [t / x if x else None for t, x in zip(total, spent, strict=True)]
    table = table.append_column("spend", pa.array(spent, pa.float64()))
    return table.append_column("roi", pa.array(roi, pa.float64()))


def finish_metrics(m: dict[str, Any]) -> dict[str, Any]:
    """Ratios and a timedelta from the core's counts."""
    users, roots, buyers = m["users"], m["roots"], m.get("buyers")
    ns = m["median_join_delay_ns"]
    out: dict[str, Any] = {
        "users": users,
        "roots": roots,
        "referred_users": m["referred"],
        "k_factor": m["referred"] / users if users else None,
        "viral_multiplier": users / roots if roots else None,
        "median_join_delay": None if ns is None else dt.timedelta(microseconds=ns // 1000),
        "median_join_delay_ns": ns,
        "join_pairs": m["join_pairs"],
        "depth_histogram": m["depth_histogram"],
        "events": m.get("events"),
        "unknown_buyer_events": m.get("unknown_buyer_events"),
        "buyers": buyers,
        "repeat_buyers": m.get("repeat_buyers"),
        "buyer_k_factor": None,
        "repeat_purchase_rate": None,
    }
    if buyers:
        out["buyer_k_factor"] = m["buyer_invitees"] / buyers
        out["repeat_purchase_rate"] = m["repeat_buyers"] / buyers
    return out
