"""The referral forest: who referred whom, validated and indexed."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from . import _core, program
from ._arrow import as_stream
from .attribution import AttributionResult, Session
from .exceptions import PolicyError
from .policy import Policy
from .social import ProgressFn, SocialGraph

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

    Users are numbered 0..num_users breadth-first (roots, then each layer
    with every referrer's users together; so every referrer comes before
    the users they referred); ``user_ids()`` maps an index back to
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
        progress: ProgressFn | None = None,
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

        ``progress(done, total)`` is called about every 100 ms while the
        build runs (its passes over the rows: index, referrers, numbering,
        cycle check, assembly); Ctrl-C stops it with KeyboardInterrupt.

        Raises SchemaError, InvalidInputError, DuplicateUserError, CycleError.
        """
        args = _column_args(user_id, referrer_id, joined_at, channel)
        stream = as_stream(referrals, "referrals")
        return cls._wrap(
            _core.ReferralGraph.from_arrow(stream, **args, on_invalid=on_invalid, progress=progress)
        )

    def extend(
        self,
        referrals: Any,
        *,
        user_id: str = "user_id",
        referrer_id: str = "referrer_id",
        joined_at: str | None = _JOINED_AT,
        channel: str | None = _CHANNEL,
        on_invalid: OnInvalid = "raise",
        progress: ProgressFn | None = None,
    ) -> ReferralGraph:
        """A new graph with the users of ``referrals`` added (this one is
        unchanged). New users may be referred by existing or new users; an id
        already in the graph is a DuplicateUserError. Existing users keep
        their indices; new ones follow in topological order (then per-user
        passes go through a breadth-first layout built once, on first use).
        ``progress`` as for :meth:`from_arrow`."""
        args = _column_args(user_id, referrer_id, joined_at, channel)
        stream = as_stream(referrals, "referrals")
        return type(self)._wrap(
            self._g.extend(stream, **args, on_invalid=on_invalid, progress=progress)
        )

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
        progress: ProgressFn | None = None,
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

        ``progress(done, total)`` (events walked) is called about every
        100 ms while the GIL is released; Ctrl-C stops the call with
        KeyboardInterrupt.

        Raises SchemaError, InvalidInputError (strict mode), PolicyError;
        MemoryError when the ledger's columns alone would need more than the
        memory available (checked before the walk writes them, or as it
        goes when qualification decides the rows), instead of the process
        being OOM-killed: attribute fewer events per call, or use
        :func:`referralgraph.dask.attribute`.
        """
        if not isinstance(policy, Policy):
            raise PolicyError(f"policy must be a referralgraph.Policy, not {type(policy).__name__}")
        args = _event_args(user_id, amount, ts, event_id)
        stream = as_stream(events, "events")
        ledger, totals, stats, issues = _core.attribute(
            self._g, stream, policy, **args, on_invalid=on_invalid, progress=progress
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

    def clean_events(
        self,
        events: Any,
        *,
        user_id: str = "user_id",
        amount: str = "amount",
        ts: str | None = _TS,
    ) -> tuple[pa.Table, pa.Table]:
        """Lenient mode for the per-user analytics (``scores``, ``pyramid``,
        ``channels``, ``metrics``, which are strict): ``(clean, issues)``,
        the events without the rows strict mode rejects (null ids, null /
        NaN / infinite amounts, null ``ts``) and one issues row per dropped
        row (row, id, column, kind, message) — the same checks and report
        as ``attribute(..., on_invalid="drop")``."""
        table = pa.table(as_stream(events, "events"))
        args = _event_args(user_id, amount, ts, None)
        del args["event_id"], args["event_id_required"]
        issues = _core.event_issues(self._g, table, **args)
        if issues.num_rows == 0:
            return table, issues
        keep = np.ones(table.num_rows, dtype=bool)
        keep[issues.column("row").to_numpy()] = False
        return table.filter(pa.array(keep)), issues

    def reach(self, max_depth: int = 3) -> pa.Table:
        """Per user (index order): ``user_id, depth, root_id, direct,
        level_1..level_K, descendants, height`` (counts as uint32).

        ``level_k`` counts the users exactly k levels below; ``descendants``
        all of them; ``height`` is the longest path down. O(users × K), no
        recursion (a chain a million deep is fine), GIL released.

        >>> import pyarrow as pa, referralgraph as rg
        >>> g = rg.ReferralGraph.from_arrow(pa.table({
        ...     "user_id": [1, 2, 3, 4], "referrer_id": [None, 1, 1, 2]}))
        >>> g.reach(max_depth=2).select(["user_id", "level_1", "level_2"]).to_pylist()[0]
        {'user_id': 1, 'level_1': 2, 'level_2': 1}
        """
        return _core.reach(self._g, program.check_depth(max_depth))

    def scores(
        self,
        events: Any,
        *,
        max_depth: int = 3,
        weights: Sequence[float] | None = None,
        tiers: tuple[float, float] = program.DEFAULT_TIERS,
        user_id: str = "user_id",
        amount: str = "amount",
    ) -> pa.Table:
        """Per user (index order): ``user_id, own_orders, own_amount,
        repeat_buyer, direct, direct_converted, conversion_rate, descendants,
        downstream_amount, score, tier``.

        ``score`` = own amount + sum of ``weights[k-1]`` × the amount bought
        by the descendants exactly k levels below (k <= ``max_depth``;
        default weights 1, 1/2, 1/4, ...). ``tiers=(core, advocate)`` are the
        shares of buyers in the top two tiers (default 1% and the next 9%);
        see :mod:`referralgraph.program` for every definition. Amount
        columns keep the events' type; events of unknown buyers are ignored.

        Raises SchemaError, InvalidInputError (null/NaN amounts, null ids);
        :meth:`clean_events` drops such rows first and reports each one.
        """
        depth = program.check_depth(max_depth)
        core_ppm, advocate_ppm = program.tier_ppm(tiers)
        return _core.scores(
            self._g,
            as_stream(events, "events"),
            max_depth=depth,
            weights=program.check_weights(weights, depth),
            unit_scale=True,
            core_ppm=core_ppm,
            advocate_ppm=advocate_ppm,
            user_id=user_id,
            amount=amount,
        )

    def pyramid(
        self, events: Any = None, *, user_id: str = "user_id", amount: str = "amount"
    ) -> pa.Table:
        """The program's shape, one row per depth: ``depth, users``, with
        events also ``buyers, amount``, and ``attenuation`` (users one level
        up per user at this depth: 4.0 means each layer is 4x smaller)."""
        stream = None if events is None else as_stream(events, "events")
        table = _core.pyramid(self._g, stream, user_id=user_id, amount=amount)
        return program.with_attenuation(table)

    def channels(
        self,
        events: Any,
        spend: Any = None,
        *,
        user_id: str = "user_id",
        amount: str = "amount",
        channel: str = "channel",
        spend_column: str = "spend",
    ) -> pa.Table:
        """Per acquisition channel of the roots (sorted by name; roots
        without a channel, implicit roots included, in a last row with a
        null channel): ``channel, roots, users, buyers, amount_roots,
        amount_descendants, viral_multiplier, amount`` — every user counts
        for the channel of its root. With a ``spend`` table (columns
        ``channel``, ``spend``, in the amount's unit; several rows per
        channel are added up) also ``spend`` and ``roi`` = amount / spend."""
        table = _core.channels(self._g, as_stream(events, "events"), user_id=user_id, amount=amount)
        return program.finish_channels(table, spend, channel, spend_column)

    def metrics(
        self, events: Any = None, *, user_id: str = "user_id", amount: str = "amount"
    ) -> dict[str, Any]:
        """Program metrics: ``users, roots, referred_users, k_factor,
        viral_multiplier, median_join_delay`` (a timedelta, or None without
        joined_at) ``, median_join_delay_ns, join_pairs, depth_histogram``
        (users per depth) and, with events, ``events,
        unknown_buyer_events, buyers, repeat_buyers, buyer_k_factor,
        repeat_purchase_rate``. Definitions: :mod:`referralgraph.program`."""
        stream = None if events is None else as_stream(events, "events")
        raw = _core.metrics(self._g, stream, user_id=user_id, amount=amount)
        return program.finish_metrics(raw)

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
        """Heap bytes held by the graph, the tables its first calls build
        included (an attribution on integer ids adds chains of ancestors
        and a keyed id index: about 90 bytes per user)."""
        return self._g.nbytes

    def as_social(self, p: float | str = 0.1) -> SocialGraph:
        """This forest as a :class:`SocialGraph` in which influence flows
        from referrer to referee, with probability ``p`` on every referral
        (``"weighted_cascade"`` gives p = 1: each referee has one referrer).
        User ids are kept; seeds and reach then work on the program."""
        return SocialGraph._from_referral(self._g, p)

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
