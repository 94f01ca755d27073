"""referralgraph: score referral programs of millions of users.

Multi-level attribution, reach, seeds and core fans, computed in Rust;
Arrow tables in and out.
"""

from . import synthetic
from ._core import __version__
from .exceptions import (
    CycleError,
    DuplicateUserError,
    InvalidInputError,
    PolicyError,
    ReferralGraphError,
    SchemaError,
)
from .graph import ReferralGraph

__all__ = [
    "CycleError",
    "DuplicateUserError",
    "InvalidInputError",
    "PolicyError",
    "ReferralGraph",
    "ReferralGraphError",
    "SchemaError",
    "__version__",
    "synthetic",
]
