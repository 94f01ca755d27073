"""referralgraph: score referral programs of millions of users.

Multi-level attribution, reach, seeds and core fans, computed in Rust;
Arrow tables in and out.
"""

import logging

from . import synthetic
from ._core import __version__, available_memory, cached_memory, release_memory
from .attribution import AttributionResult, Session
from .exceptions import (
    CycleError,
    DuplicateUserError,
    InvalidInputError,
    PolicyError,
    ReferralGraphError,
    SchemaError,
)
from .graph import ReferralGraph
from .policy import MinSpend, Policy, geometric
from .social import SocialGraph, Spread, seeds_stats

# A library logs; the application decides where to (the CLI's --log-json).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AttributionResult",
    "CycleError",
    "DuplicateUserError",
    "InvalidInputError",
    "MinSpend",
    "Policy",
    "PolicyError",
    "ReferralGraph",
    "ReferralGraphError",
    "SchemaError",
    "Session",
    "SocialGraph",
    "Spread",
    "__version__",
    "available_memory",
    "cached_memory",
    "geometric",
    "release_memory",
    "seeds_stats",
    "synthetic",
]
