"""Synthetic referral programs, generated in Rust.

The programs have the shape of real ones: a few opinion leaders invite
thousands (heavy-tailed invitations by preferential attachment),
invitations attenuate with depth, roots come from several acquisition
channels (``ads``, ``packaging_qr``, ``store``, ``social``, ``partner``),
buyers repeat and about 4% of purchases are refunded. Amounts are int64
cents; times are UTC nanosecond timestamps over one year from 2024-01-01.
Same arguments, same tables, on any number of threads.
"""

from __future__ import annotations

import pyarrow as pa

from . import _core

__all__ = ["program", "social"]


def program(
    users: int = 1_000_000,
    seed: int = 0,
    *,
    events_per_user: float = 2.5,
    root_share: float = 0.05,
    alpha: float = 1.3,
    attenuation: float = 0.6,
    days: int = 365,
) -> tuple[pa.Table, pa.Table]:
    """Returns ``(referrals, events)``.

    referrals: ``user_id`` int64, ``referrer_id`` int64 (null for roots),
    ``joined_at`` timestamp[ns, UTC], ``channel`` string (roots only).
    events: ``event_id`` int64, ``user_id`` int64, ``amount`` int64 cents
    (negative: a refund), ``ts`` timestamp[ns, UTC].

    >>> referrals, events = program(1000, seed=1)
    >>> referrals.num_rows
    1000
    """
    if users < 0 or users >= 2**31:
        raise ValueError(f"users must be in [0, 2**31), not {users}")
    if not 0.0 <= root_share <= 1.0:
        raise ValueError(f"root_share must be in [0, 1], not {root_share}")
    if events_per_user < 0 or alpha <= 0 or not 0.0 <= attenuation <= 1.0 or days <= 0:
        raise ValueError("events_per_user >= 0, alpha > 0, 0 <= attenuation <= 1, days > 0")
    return _core.synthetic_program(
        users, seed, events_per_user, root_share, alpha, attenuation, days
    )


def social(
    nodes: int = 100_000,
    *,
    avg_degree: float = 10.0,
    exponent: float = 2.5,
    seed: int = 0,
) -> pa.Table:
    """Edges ``src, dst`` (int64 ids 0..nodes) of a directed graph whose
    degrees follow a power law with the given exponent (Chung-Lu style:
    both ends of each of ``nodes * avg_degree`` edges drawn by rank), so a
    few opinion leaders have very many followers. Self-loops and repeated
    pairs are left in, as in real exports (``SocialGraph`` merges them).

    >>> social(1000, seed=1).num_rows
    10000
    """
    if nodes < 1 or nodes >= 2**31:
        raise ValueError(f"nodes must be in [1, 2**31), not {nodes}")
    if avg_degree < 0 or exponent <= 2.0:
        raise ValueError("avg_degree >= 0 and exponent > 2")
    return _core.synthetic_social(nodes, round(nodes * avg_degree), exponent, seed)
