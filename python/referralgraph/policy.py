"""Attribution policies: per-level rates, windows, first-N, qualification,
compression and caps (DESIGN.md, "Attribution")."""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from .exceptions import PolicyError

__all__ = ["MinSpend", "Policy", "geometric"]

Number = int | float | Decimal

_UNITS_NS = {
    "w": 7 * 86_400 * 10**9,
    "d": 86_400 * 10**9,
    "h": 3_600 * 10**9,
    "m": 60 * 10**9,
    "s": 10**9,
    "ms": 10**6,
    "us": 10**3,
    "ns": 1,
}
_WINDOW = re.compile(r"^\s*(\d+)\s*(w|d|h|ms|us|ns|m|s)\s*$")


def window_ns(window: str | dt.timedelta | None) -> int | None:
    """A window as nanoseconds: ``"365d"``, ``"12h"``, ``"90m"``, ``"2w"`` or a timedelta."""
    if window is None:
        return None
    if isinstance(window, dt.timedelta):
        ns = (window.days * 86_400 + window.seconds) * 10**9 + window.microseconds * 1000
    elif isinstance(window, str):
        m = _WINDOW.match(window)
        if not m:
            raise PolicyError(
                f"window {window!r}: expected a number and a unit (w, d, h, m, s, ms, us, ns), "
                'e.g. "365d"'
            )
        ns = int(m.group(1)) * _UNITS_NS[m.group(2)]
    else:
        raise PolicyError(f"window must be a string or a timedelta, not {type(window).__name__}")
    if ns <= 0:
        raise PolicyError(f"window must be positive, not {window!r}")
    return ns


@dataclass(frozen=True)
class MinSpend:
    """Qualification: an ancestor earns at time t once the sum of their own
    amounts with ts <= t (refunds included) is at least ``amount``, in the
    events' amount unit (cents for int64, the decimal value for decimals)."""

    amount: Number

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int | float | Decimal):
            raise PolicyError(f"MinSpend amount must be a number, not {self.amount!r}")
        if isinstance(self.amount, float) and not math.isfinite(self.amount):
            raise PolicyError("MinSpend amount must be finite")


Qualify = Literal["purchased"] | MinSpend | None


@dataclass(frozen=True)
class Policy:
    """How purchases pay credit up the referral chain.

    >>> Policy(rates=[0.10, 0.05, 0.02], window="365d", qualify="purchased")
    Policy(rates=(0.1, 0.05, 0.02), window='365d', qualify='purchased')

    - ``rates``: level 1 (the direct referrer), level 2, ...; each in [0, 1],
      summing to at most 1; held as integer parts per million.
    - ``window``: only purchases within this long after the buyer joined earn
      credit (needs ``ts`` and ``joined_at``).
    - ``max_events_per_buyer``: only each buyer's first N creditable events
      (1: first purchase only), in (ts, input row) order.
    - ``qualify``: None (everyone earns), ``"purchased"`` (the ancestor has
      bought, amount > 0, by then) or ``MinSpend(x)``.
    - ``compression``: unqualified ancestors are skipped and use no level.
    - ``cap_per_beneficiary``: most credit one beneficiary earns in total,
      in the events' amount unit.
    """

    rates: Sequence[float]
    window: str | dt.timedelta | None = None
    max_events_per_buyer: int | None = None
    qualify: Qualify = None
    compression: bool = False
    cap_per_beneficiary: Number | None = None

    def __post_init__(self) -> None:
        rates = tuple(self.rates)
        object.__setattr__(self, "rates", rates)
        if not 1 <= len(rates) <= 255:
            raise PolicyError(f"rates must have 1 to 255 levels, not {len(rates)}")
        for k, r in enumerate(rates, 1):
            if isinstance(r, bool) or not isinstance(r, int | float) or not 0.0 <= r <= 1.0:
                raise PolicyError(f"rate of level {k} is {r!r}: rates must be numbers in [0, 1]")
        if sum(round(r * 1e6) for r in rates) > 1_000_000:
            raise PolicyError(f"rates sum to {sum(rates)}: they must sum to at most 1")
        window_ns(self.window)
        n = self.max_events_per_buyer
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise PolicyError(f"max_events_per_buyer must be an integer >= 1, not {n!r}")
        if n is not None and n >= 2**32:
            raise PolicyError("max_events_per_buyer must be below 2**32")
        if self.qualify is not None and self.qualify != "purchased":
            if not isinstance(self.qualify, MinSpend):
                raise PolicyError(
                    f'qualify must be None, "purchased" or MinSpend(x), not {self.qualify!r}'
                )
        cap = self.cap_per_beneficiary
        if cap is not None:
            if isinstance(cap, bool) or not isinstance(cap, int | float | Decimal):
                raise PolicyError(f"cap_per_beneficiary must be a number, not {cap!r}")
            if cap < 0 or (isinstance(cap, float) and not math.isfinite(cap)):
                raise PolicyError(f"cap_per_beneficiary must be finite and >= 0, not {cap!r}")
        if not isinstance(self.compression, bool):
            raise PolicyError("compression must be True or False")

    @property
    def levels(self) -> int:
        return len(self.rates)

    @property
    def ppm(self) -> list[int]:
        """Each level's rate in integer parts per million."""
        return [round(r * 1e6) for r in self.rates]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Policy:
        """A policy from plain data (a parsed TOML or JSON file)::

            rates = [0.10, 0.05, 0.02]     # or: geometric = {first = 0.1, ratio = 0.5, depth = 3}
            window = "365d"
            max_events_per_buyer = 1
            qualify = "purchased"          # or: qualify = {min_spend = 5000}
            compression = false
            cap_per_beneficiary = 50000

        Unknown keys are a PolicyError (a typo must not pass silently).
        """
        d = dict(d)
        known = {
            "rates",
            "geometric",
            "window",
            "max_events_per_buyer",
            "qualify",
            "compression",
            "cap_per_beneficiary",
        }
        unknown = sorted(set(d) - known)
        if unknown:
            raise PolicyError(
                f"unknown policy keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        if ("rates" in d) == ("geometric" in d):
            raise PolicyError("a policy needs exactly one of rates or geometric")
        g = d.pop("geometric", None)
        if g is not None:
            if not isinstance(g, dict) or set(g) != {"first", "ratio", "depth"}:
                raise PolicyError("geometric must be a table with first, ratio and depth")
            d["rates"] = geometric(**g)
        q = d.get("qualify")
        if isinstance(q, dict):
            if set(q) != {"min_spend"}:
                raise PolicyError(f'qualify must be "purchased" or {{min_spend = x}}, not {q!r}')
            d["qualify"] = MinSpend(q["min_spend"])
        elif isinstance(q, str) and q.startswith("min_spend:"):
            x = q.split(":", 1)[1].strip()
            try:
                d["qualify"] = MinSpend(int(x) if x.lstrip("-").isdigit() else Decimal(x))
            except ArithmeticError:
                raise PolicyError(f"qualify {q!r}: {x!r} is not a number") from None
        return cls(**d)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> Policy:
        """A policy from a TOML file (keys as in :meth:`from_dict`)."""
        import tomllib

        with open(path, "rb") as f:
            try:
                data = tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                raise PolicyError(f"{os.fspath(path)}: {e}") from None
        return cls.from_dict(data.get("policy", data))

    @property
    def window_ns(self) -> int | None:
        return window_ns(self.window)

    @property
    def stateful(self) -> bool:
        """True when credit depends on earlier events (qualification, first-N, caps)."""
        return (
            self.qualify is not None
            or self.max_events_per_buyer is not None
            or self.cap_per_beneficiary is not None
        )

    def __repr__(self) -> str:
        parts = [f"rates={self.rates!r}"]
        for name in ("window", "max_events_per_buyer", "qualify", "cap_per_beneficiary"):
            v = getattr(self, name)
            if v is not None:
                parts.append(f"{name}={v!r}")
        if self.compression:
            parts.append("compression=True")
        return f"Policy({', '.join(parts)})"


def geometric(first: float, ratio: float, depth: int) -> tuple[float, ...]:
    """Rates ``first, first*ratio, first*ratio**2, ...`` for ``depth`` levels.

    >>> geometric(first=0.1, ratio=0.5, depth=3)
    (0.1, 0.05, 0.025)
    """
    if depth < 1:
        raise PolicyError(f"depth must be >= 1, not {depth}")
    if not 0 <= first <= 1 or ratio < 0:
        raise PolicyError("first must be in [0, 1] and ratio >= 0")
    return tuple(first * ratio**k for k in range(depth))


def _amounts_for(
    policy: Policy, kind: str, scale: int
) -> tuple[str, int | float | None, int | float | None]:
    """(qualify kind, MinSpend threshold, cap) in the engine's units for
    amounts of ``kind`` ("int", "decimal" with ``scale``, "float"): integers
    are unscaled; a threshold that falls between two units rounds up (spend
    must reach it), a cap rounds down (credit must stay within it)."""
    from decimal import ROUND_CEILING, ROUND_FLOOR

    def conv(x: Number | None, rounding: str) -> int | float | None:
        if x is None:
            return None
        if kind == "float":
            return float(x)
        d = Decimal(repr(x)) if isinstance(x, float) else Decimal(x)
        return int(d.scaleb(scale).to_integral_value(rounding=rounding))

    q = policy.qualify
    qualify_kind = "none" if q is None else "purchased" if q == "purchased" else "min_spend"
    min_spend = conv(q.amount, ROUND_CEILING) if isinstance(q, MinSpend) else None
    return qualify_kind, min_spend, conv(policy.cap_per_beneficiary, ROUND_FLOOR)
