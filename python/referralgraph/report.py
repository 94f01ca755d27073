"""One self-contained HTML page about a program: the pyramid, the reach
distribution, channel ROI, credit by level, the top beneficiaries and the
program metrics.

Charts are inline SVG drawn here (no JavaScript, no network, no plotting
library needed to view or to build the page). Every bar and point carries
its exact value in ``data-value`` and a tooltip, and every chart has a table
beside it, so the page can be read by people and checked by programs.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import os
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .io import atomic_path

if TYPE_CHECKING:
    from .attribution import AttributionResult
    from .graph import ReferralGraph

__all__ = ["render", "write"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{margin-bottom:0}.sub{color:#666;margin-top:.2rem}
section{margin:2rem 0}figure{margin:0;display:inline-block;vertical-align:top}
figcaption{font-weight:600;margin-bottom:.3rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
td,th{border-bottom:1px solid #ddd;padding:.2rem .6rem;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
svg text{font-size:10px;fill:#444}
"""


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        return f"{v:,.3f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, Decimal):
        return f"{v:,}"
    return str(v)


def _short(v: float) -> str:
    """1200 -> 1.2k, 3e6 -> 3M: axis labels."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.3g}"


def _table(id_: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(f'<td data-value="{html.escape(str(v))}">{html.escape(_fmt(v))}</td>' for v in r)
        + "</tr>"
        for r in rows
    )
    return f'<table id="{id_}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _bars(
    id_: str, title: str, labels: Sequence[str], values: Sequence[float], *, log: bool = False
) -> str:
    """A vertical bar chart as SVG; ``log`` uses a log10 scale."""
    w, h, pad = 540, 240, 56
    n = max(len(values), 1)
    vals = [float(v) for v in values]
    scale = [math.log10(v + 1) if log else v for v in vals]
    top = max([*scale, 1e-12])
    bw = (w - 2 * pad) / n
    parts = []
    for i, (lab, v, sv) in enumerate(zip(labels, vals, scale, strict=True)):
        bh = max(0.0, sv / top * (h - 2 * pad))
        x, y = pad + i * bw, h - pad - bh
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(bw - 2, 1):.1f}" height="{bh:.1f}" '
            f'fill="#4c78a8" data-label="{html.escape(lab)}" data-value="{v!r}">'
            f"<title>{html.escape(lab)}: {_fmt(v)}</title></rect>"
        )
        if n <= 24:
            parts.append(
                f'<text x="{x + bw / 2:.1f}" y="{h - pad + 12}" text-anchor="middle">'
                f"{html.escape(lab)}</text>"
            )
    axis = f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#999"/>'
    # Value ticks: decades on a log scale, quarters of the top otherwise.
    ticks = (
        [10**d for d in range(int(top) + 1)]
        if log
        else [max(vals, default=0) * q / 4 for q in (1, 2, 3, 4)]
    )
    for tv in ticks:
        sv = math.log10(tv + 1) if log else tv
        ty = h - pad - sv / top * (h - 2 * pad)
        axis += (
            f'<line x1="{pad - 3}" y1="{ty:.1f}" x2="{w - pad}" y2="{ty:.1f}" stroke="#eee"/>'
            f'<text x="{pad - 5}" y="{ty + 3:.1f}" text-anchor="end">{_short(tv)}</text>'
        )
    note = " (log scale)" if log else ""
    return (
        f'<figure id="{id_}"><figcaption>{html.escape(title)}{note}</figcaption>'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}">{axis}{"".join(parts)}</svg></figure>'
    )


def _loglog(id_: str, title: str, xs: Sequence[int], ys: Sequence[int]) -> str:
    """Points on log-log axes (x: a count, y: users with that count)."""
    w, h, pad = 540, 240, 56
    lx = [math.log10(x) for x in xs]
    ly = [math.log10(y) for y in ys]
    x1, y1 = max([*lx, 1.0]), max([*ly, 1.0])
    pts = "".join(
        f'<circle cx="{pad + a / x1 * (w - 2 * pad):.1f}" '
        f'cy="{h - pad - b / y1 * (h - 2 * pad):.1f}" r="3" fill="#e45756" '
        f'data-x="{x}" data-value="{y}"><title>{x:,}: {y:,} users</title></circle>'
        for a, b, x, y in zip(lx, ly, xs, ys, strict=True)
    )
    axes = "".join(
        f'<text x="{pad + d / x1 * (w - 2 * pad):.1f}" y="{h - pad + 12}" text-anchor="middle">'
        f"{_short(10**d)}</text>"
        for d in range(int(x1) + 1)
    ) + "".join(
        f'<text x="{pad - 5}" y="{h - pad - d / y1 * (h - 2 * pad) + 3:.1f}" text-anchor="end">'
        f"{_short(10**d)}</text>"
        for d in range(int(y1) + 1)
    )
    axes += (
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#999"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#999"/>'
        f'<text x="{w - pad}" y="{h - pad + 26}" text-anchor="end">descendants (log)</text>'
        f'<text x="{pad + 4}" y="{pad - 6}">users (log)</text>'
    )
    return (
        f'<figure id="{id_}"><figcaption>{html.escape(title)}</figcaption>'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}">{axes}{pts}</svg></figure>'
    )


def _section(title: str, *parts: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{''.join(parts)}</section>"


def render(
    graph: ReferralGraph,
    events: Any,
    *,
    result: AttributionResult | None = None,
    spend: Any = None,
    max_depth: int = 3,
    top: int = 20,
    title: str = "Referral program report",
) -> str:
    """The report as an HTML string. ``result`` (an attribution of
    ``events``) adds credit by level and the top beneficiaries; ``spend``
    (a ``channel, spend`` table) adds ROI per channel."""
    events = events if isinstance(events, pa.Table) else pa.table(events)
    out = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
        f'<p class="sub">{graph.num_users:,} users, {graph.num_roots:,} roots, max depth '
        f"{graph.max_depth}, {events.num_rows:,} events; made "
        f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} by referralgraph</p>",
    ]
    m = graph.metrics(events)
    rows = [[k, v] for k, v in m.items() if not isinstance(v, (list, dict, pa.Table))]
    out.append(_section("Program metrics", _table("metrics", ["metric", "value"], rows)))

    pyr = graph.pyramid(events).to_pylist()
    out.append(
        _section(
            "Pyramid: users by depth",
            _bars(
                "pyramid-chart",
                "Users by depth",
                [str(r["depth"]) for r in pyr],
                [r["users"] for r in pyr],
                log=True,
            ),
            _table(
                "pyramid",
                ["depth", "users", "buyers", "amount"],
                [[r["depth"], r["users"], r["buyers"], r["amount"]] for r in pyr],
            ),
        )
    )

    reach = graph.reach(max_depth=max_depth)
    desc = np.asarray(reach.column("descendants"))
    xs, ys = np.unique(desc[desc > 0], return_counts=True)
    out.append(
        _section(
            "Reach: how many users sit below each user",
            _loglog("reach-chart", "Reach distribution (log-log)", xs.tolist(), ys.tolist()),
            _table(
                "reach",
                ["descendants", "users"],
                [[int(x), int(y)] for x, y in zip(xs[:50], ys[:50], strict=True)],
            ),
        )
    )

    ch = graph.channels(events, spend=spend).to_pylist()
    have_roi = spend is not None
    key = "roi" if have_roi else "viral_multiplier"
    base = ["channel", "roots", "users", "viral_multiplier", "amount"]
    out.append(
        _section(
            "Channels: amount from roots and their viral descendants",
            _bars(
                "channels-chart",
                "ROI per channel" if have_roi else "Users per root (viral multiplier)",
                [str(r["channel"] or "(none)") for r in ch],
                [float(r[key] or 0.0) for r in ch],
            ),
            _table(
                "channels",
                [*base, *(["spend", "roi"] if have_roi else [])],
                [
                    [r["channel"] or "(none)", *(r[c] for c in base[1:])]
                    + ([r["spend"], r["roi"]] if have_roi else [])
                    for r in ch
                ],
            ),
        )
    )

    if result is not None:
        totals = result.totals
        levels = [c for c in totals.column_names if c.startswith("credit_level_")]
        sums = [sum(x for x in totals.column(c).to_pylist() if x is not None) for c in levels]
        names = [c.rsplit("_", 1)[1] for c in levels]
        out.append(
            _section(
                "Credit by level",
                _bars("levels-chart", "Credit by level", names, sums),
                _table(
                    "levels",
                    ["level", "credit"],
                    [[k, v] for k, v in zip(names, sums, strict=True)],
                ),
            )
        )
        head = totals.slice(0, top).to_pylist()
        out.append(
            _section(
                f"Top {len(head)} beneficiaries",
                _table(
                    "top-beneficiaries",
                    ["beneficiary_id", "credit", "events", *levels],
                    [
                        [r["beneficiary_id"], r["credit"], r["events"], *(r[c] for c in levels)]
                        for r in head
                    ],
                ),
                _table(
                    "attribution-stats",
                    ["stat", "value"],
                    [[k, v] for k, v in result.stats.items()],
                ),
            )
        )
    out.append("</body></html>")
    return "".join(out)


def write(path: str | os.PathLike[str], graph: ReferralGraph, events: Any, **kwargs: Any) -> Path:
    """Writes :func:`render`'s page to ``path`` (atomically); returns the path."""
    page = render(graph, events, **kwargs)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(path)
