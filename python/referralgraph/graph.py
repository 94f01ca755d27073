"""The referral forest: who referred whom, validated and indexed."""

from __future__ import annotations

import os
from typing import Any, Literal

import pyarrow as pa

from . import _core
from ._arrow import as_stream
from .attribution import AttributionResult, Session
from .exceptions import PolicyError
from .policy import Policy

OnInvalid = Literal["raise", "drop"]


class _Default(str):
    """A default column name: used when present, ignored when absent."""


_JOINED_AT = _Default("joined_at")
_CHANNEL = _Default("channel")
_TS = _Default("ts")
_EVENT_ID = _Default("event_id")


def _event_args(user_id: str, amount: str, ts: str | None, event_id: str | None) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "amount": amount,
        "ts": None if ts is None else str(ts),
        "ts_required": ts is not None and not isinstance(ts, _Default),
        "event_id": None if event_id is None else str(event_id),
        "event_id_required": event_id is not None and not isinstance(event_id, _Default),
    }


def _column_args(
    user_id: str, referrer_id: str, joined_at: str | None, channel: str | None
) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "referrer_id": referrer_id,
        "joined_at": None if joined_at is None else str(joined_at),
        "joined_at_required": joined_at is not None and not isinstance(joined_at, _Default),
        "channel": None if channel is None else str(channel),
        "channel_required": channel is not None and not isinstance(channel, _Default),
    }


class ReferralGraph:
    """An immutable referral forest of (possibly) millions of users.

    Build it from a referrals table (one row per user, who referred them)::

        >>> import pyarrow as pa, referralgraph as rg
        >>> g = rg.ReferralGraph.from_arrow(pa.table({
        ...     "user_id": [1, 2, 3], "referrer_id": [None, 1, 2]}))
        >>> g.num_users, g.num_roots, g.max_depth
        (3, 1, 2)

    Users are numbered 0..num_users in a topological order (every referrer
    before the users they referred); ``user_ids()`` maps an index back to
    the caller's id and ``index_of(ids)`` does the reverse. A graph is safe
    to share between threads; long calls release the GIL.
    """

    __slots__ = ("_g",)
    _g: _core.ReferralGraph

    def __init__(self, *_args: object, **_kwargs: object) -> None:
        raise TypeError(
            "build a ReferralGraph with ReferralGraph.from_arrow(...) or ReferralGraph.load(...)"
        )

    @classmethod
    def _wrap(cls, g: _core.ReferralGraph) -> ReferralGraph:
        obj = object.__new__(cls)
        obj._g = g
        return obj

    @classmethod
    def from_arrow(
        cls,
        referrals: Any,
        *,
        user_id: str = "user_id",
        referrer_id: str = "referrer_id",
        joined_at: str | None = _JOINED_AT,
        channel: str | None = _CHANNEL,
        on_invalid: OnInvalid = "raise",
    ) -> ReferralGraph:
        """Builds a graph from any Arrow-compatible referrals table.

        ``user_id`` and ``referrer_id`` are integer (any width, widened to
        int64) or string columns of the same kind; a null referrer marks a
        root, and a referrer without a row of its own is added as a root.
        ``joined_at`` (timestamp of any unit/zone, or date) and ``channel``
        (string) are read when present; naming them explicitly makes them
        required, ``None`` ignores them.

        ``on_invalid="raise"`` raises on the first problem; ``"drop"`` leaves
        bad rows out (null ids, duplicates: the later row) and drops bad
        referrals (self-referrals; a cycle is broken at the member who joined
        last, ties by the larger id), reporting each in :attr:`issues`.

        Raises SchemaError, InvalidInputError, DuplicateUserError, CycleError.
        """
        args = _column_args(user_id, referrer_id, joined_at, channel)
        stream = as_stream(referrals, "referrals")
        return cls._wrap(_core.ReferralGraph.from_arrow(stream, **args, on_invalid=on_invalid))

    def extend(
        self,
        referrals: Any,
        *,
        user_id: str = "user_id",
        referrer_id: str = "referrer_id",
        joined_at: str | None = _JOINED_AT,
        channel: str | None = _CHANNEL,
        on_invalid: OnInvalid = "raise",
    ) -> ReferralGraph:
        """A new graph with the users of ``referrals`` added (this one is
        unchanged). New users may be referred by existing or new users; an id
        already in the graph is a DuplicateUserError. Existing users keep
        their indices; new ones follow in topological order."""
        args = _column_args(user_id, referrer_id, joined_at, channel)
        stream = as_stream(referrals, "referrals")
        return type(self)._wrap(self._g.extend(stream, **args, on_invalid=on_invalid))

    def attribute(
        self,
        events: Any,
        policy: Policy,
        *,
        user_id: str = "user_id",
        amount: str = "amount",
        ts: str | None = _TS,
        event_id: str | None = _EVENT_ID,
        on_invalid: OnInvalid = "raise",
    ) -> AttributionResult:
        """Pays every purchase's credit up the chain of referrers.

        ``events``: any Arrow-compatible table with the buyer's ``user_id``,
        ``amount`` (integer minor units, decimal128 or float64; negative: a
        refund) and optionally ``ts`` and ``event_id`` (default: row number).
        Semantics: DESIGN.md "Attribution" (see :class:`Policy`).

        >>> import pyarrow as pa, referralgraph as rg
        >>> g = rg.ReferralGraph.from_arrow(pa.table({
        ...     "user_id": [1, 2, 3], "referrer_id": [None, 1, 2]}))
        >>> r = g.attribute(pa.table({"user_id": [3], "amount": [10_000]}),
        ...                 rg.Policy(rates=[0.10, 0.05]))
        >>> r.ledger.column("credit").to_pylist()
        [1000, 500]

        Raises SchemaError, InvalidInputError (strict mode), PolicyError.
        """
        if not isinstance(policy, Policy):
            raise PolicyError(f"policy must be a referralgraph.Policy, not {type(policy).__name__}")
        args = _event_args(user_id, amount, ts, event_id)
        stream = as_stream(events, "events")
        ledger, totals, stats, issues = _core.attribute(
            self._g, stream, policy, **args, on_invalid=on_invalid
        )
        return AttributionResult(ledger=ledger, totals=totals, stats=stats, issues=issues)

    def session(
        self,
        policy: Policy,
        history: Any = None,
        *,
        amount_type: str = "int64",
        user_id: str = "user_id",
        amount: str = "amount",
        ts: str | None = _TS,
        event_id: str | None = _EVENT_ID,
    ) -> Session:
        """A thread-safe session for one event at a time (services). With
        ``history`` (an events table) its state reflects those events and
        amounts take their type; without, amounts are ``amount_type``:
        ``"int64"``, ``"float64"`` or ``"decimal128(p, s)"``."""
        if not isinstance(policy, Policy):
            raise PolicyError(f"policy must be a referralgraph.Policy, not {type(policy).__name__}")
        kind, scale = _amount_kind(amount_type)
        stream = None if history is None else as_stream(history, "history")
        inner = _core.session(
            self._g,
            policy,
            stream,
            amount_kind=kind,
            scale=scale,
            **_event_args(user_id, amount, ts, event_id),
        )
        return Session(inner)

    def attribute_one(
        self,
        user_id: int | str,
        amount: int | float,
        ts: Any = None,
        *,
        policy: Policy,
    ) -> list[tuple[int | str, int, Any]]:
        """Credits of one event under a stateless policy (no qualification,
        first-N or cap: those need a :meth:`session` with history)."""
        if policy.stateful:
            raise PolicyError(
                "attribute_one takes stateless policies; for qualification, first-N or caps "
                "use graph.session(policy, history=events)"
            )
        kind = "float64" if isinstance(amount, float) else "int64"
        return self.session(policy, amount_type=kind).attribute(user_id, amount, ts)

    @property
    def num_users(self) -> int:
        """Users, implicit roots included."""
        return self._g.num_users

    @property
    def num_roots(self) -> int:
        """Users without a referrer."""
        return self._g.num_roots

    @property
    def max_depth(self) -> int:
        """Depth of the deepest user (a root has depth 0)."""
        return self._g.max_depth

    @property
    def id_type(self) -> str:
        """``"int64"`` or ``"string"``."""
        return self._g.id_type

    @property
    def nbytes(self) -> int:
        """Heap bytes held by the graph."""
        return self._g.nbytes

    @property
    def issues(self) -> pa.Table:
        """Rows dropped or repaired with ``on_invalid="drop"``: row, id, column, kind, message."""
        return self._g.issues()

    def users(self) -> pa.Table:
        """One row per user, in index order: user_id, referrer_id, depth,
        and joined_at / channel when the graph has them."""
        return self._g.users()

    def user_ids(self) -> pa.Array:
        """The id of each user index."""
        return self._g.user_ids()

    def index_of(self, ids: Any) -> pa.UInt32Array:
        """The user index of each id (null where unknown)."""
        if not hasattr(ids, "__arrow_c_array__"):
            ids = pa.array(ids)
        return self._g.index_of(ids)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes a versioned, checksummed file (atomically)."""
        self._g.save(os.fspath(path))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ReferralGraph:
        """Reads a file written by :meth:`save`; InvalidInputError if it is
        truncated or corrupt."""
        return cls._wrap(_core.ReferralGraph.load(os.fspath(path)))

    def to_bytes(self) -> bytes:
        """The saved-file bytes (also the pickle payload)."""
        return self._g.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> ReferralGraph:
        return cls._wrap(_core.ReferralGraph.from_bytes(data))

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (ReferralGraph.from_bytes, (self.to_bytes(),))

    def __len__(self) -> int:
        return self.num_users

    def __repr__(self) -> str:
        return (
            f"ReferralGraph(users={self.num_users:,}, roots={self.num_roots:,}, "
            f"max_depth={self.max_depth}, ids={self.id_type})"
        )


def _amount_kind(amount_type: str) -> tuple[str, int]:
    import re

    t = amount_type.replace(" ", "")
    if t in ("int64", "int"):
        return "int", 0
    if t in ("float64", "float", "double"):
        return "float", 0
    m = re.fullmatch(r"decimal128?\((\d+),(-?\d+)\)", t)
    if m:
        return "decimal", int(m.group(2))
    raise ValueError(
        f'amount_type must be "int64", "float64" or "decimal128(p, s)", not {amount_type!r}'
    )
