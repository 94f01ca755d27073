"""Plots for people who would rather look than read (matplotlib, an
optional extra: ``pip install referralgraph[plot]``).

Each function takes the table that the matching ``ReferralGraph`` method
returns (or the graph and events, to compute it), draws on ``ax`` (a new
figure when omitted) and returns the Axes.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["channel_roi", "pyramid", "reach_distribution"]


def _axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "referralgraph.plot needs matplotlib: pip install 'referralgraph[plot]'"
        ) from e
    _, new = plt.subplots(figsize=(7, 4.5))
    return new


def pyramid(table: pa.Table, *, ax: Axes | None = None, buyers: bool = True) -> Axes:
    """The program as a pyramid: one centred bar per depth (users; buyers
    inside when the table has them), the roots on top."""
    ax = _axes(ax)
    depth = table.column("depth").to_pylist()
    users = table.column("users").to_pylist()
    ax.barh(depth, users, left=[-u / 2 for u in users], color="#9ecae1", label="users")
    if buyers and "buyers" in table.column_names:
        b = table.column("buyers").to_pylist()
        ax.barh(depth, b, left=[-x / 2 for x in b], color="#3182bd", height=0.5, label="buyers")
    ax.invert_yaxis()
    ax.set_yticks(depth)
    ax.set_ylabel("depth (0 = roots)")
    ax.set_xlabel("users")
    ax.set_title("Program pyramid")
    ax.legend(loc="lower right")
    return ax


def reach_distribution(
    table: pa.Table, *, column: str = "descendants", ax: Axes | None = None
) -> Axes:
    """How many users reach how many others (log-log): for each value v >= 1
    of ``column`` (``descendants``, ``level_2``, ...), the users with v."""
    ax = _axes(ax)
    counts = Counter(v for v in table.column(column).to_pylist() if v)
    xs = sorted(counts)
    ax.loglog(xs, [counts[x] for x in xs], marker="o", linestyle="none", markersize=3)
    ax.set_xlabel(column)
    ax.set_ylabel("users")
    ax.set_title(f"Reach distribution ({column})")
    return ax


def channel_roi(table: pa.Table, *, ax: Axes | None = None) -> Axes:
    """Per acquisition channel: ROI (amount per unit of spend) when the
    table has it, else the viral multiplier (users per root)."""
    ax = _axes(ax)
    metric = "roi" if "roi" in table.column_names else "viral_multiplier"
    names = ["(none)" if c is None else str(c) for c in table.column("channel").to_pylist()]
    values: list[Any] = [0.0 if v is None else v for v in table.column(metric).to_pylist()]
    ax.bar(names, values, color="#31a354")
    ax.set_ylabel("amount / spend" if metric == "roi" else "users per root")
    ax.set_title("Channel ROI" if metric == "roi" else "Channel viral multiplier")
    return ax
