"""Exceptions raised by referralgraph.

Every error derives from :class:`ReferralGraphError`, itself a ``ValueError``,
so ``except ValueError`` keeps working for callers that do not care which.
Messages name the column, the row and the id at fault.
"""

from __future__ import annotations

__all__ = [
    "CycleError",
    "DuplicateUserError",
    "InvalidInputError",
    "PolicyError",
    "ReferralGraphError",
    "SchemaError",
]


class ReferralGraphError(ValueError):
    """Base class of every referralgraph error; also raised for internal bugs
    (a Rust panic becomes this, never a crash)."""


class InvalidInputError(ReferralGraphError):
    """A bad value in a row: a null id, a self-referral, a null/NaN/infinite
    amount, a null ``ts``, a timestamp out of range, a corrupt saved file."""


class DuplicateUserError(ReferralGraphError):
    """The same ``user_id`` on two rows of the referrals table (or a user
    that the graph being extended already has)."""


class CycleError(ReferralGraphError):
    """The referrals form a cycle. ``.cycle`` lists its members' ids in
    referral order: each referred the next, and the last referred the first."""

    cycle: list[str]

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.cycle = []


class PolicyError(ReferralGraphError):
    """A bad policy (rates outside [0, 1] or summing above 1, a bad window
    or cap), or one that needs a column the input lacks."""


class SchemaError(ReferralGraphError):
    """A missing column, a column of the wrong type (float ids, say), or id
    types that differ between tables."""
