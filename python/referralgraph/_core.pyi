"""Type stubs for the Rust extension module (kept in step with src/)."""

from collections.abc import Callable
from typing import Any, final

import pyarrow as pa

__all__ = [
    "ReferralGraph",
    "Session",
    "SocialGraph",
    "__version__",
    "_panic_for_test",
    "attribute",
    "available_memory",
    "cached_memory",
    "cap_sorted",
    "channels",
    "event_issues",
    "metrics",
    "pyramid",
    "reach",
    "release_memory",
    "scores",
    "session",
    "synthetic_program",
    "synthetic_social",
]

__version__: str

_ProgressFn = Callable[[int, int], object]

@final
class ReferralGraph:
    @staticmethod
    def from_arrow(
        data: Any,
        *,
        user_id: str,
        referrer_id: str,
        joined_at: str | None,
        joined_at_required: bool,
        channel: str | None,
        channel_required: bool,
        on_invalid: str,
        progress: _ProgressFn | None = None,
    ) -> ReferralGraph: ...
    def extend(
        self,
        data: Any,
        *,
        user_id: str,
        referrer_id: str,
        joined_at: str | None,
        joined_at_required: bool,
        channel: str | None,
        channel_required: bool,
        on_invalid: str,
        progress: _ProgressFn | None = None,
    ) -> ReferralGraph: ...
    @property
    def num_users(self) -> int: ...
    @property
    def num_roots(self) -> int: ...
    @property
    def max_depth(self) -> int: ...
    @property
    def id_type(self) -> str: ...
    @property
    def has_joined_at(self) -> bool: ...
    @property
    def nbytes(self) -> int: ...
    def issues(self) -> pa.Table: ...
    def users(self) -> pa.Table: ...
    def user_ids(self) -> pa.Array: ...
    def index_of(self, ids: Any) -> pa.UInt32Array: ...
    def save(self, path: str) -> None: ...
    @staticmethod
    def load(path: str) -> ReferralGraph: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes) -> ReferralGraph: ...

def synthetic_program(
    users: int,
    seed: int,
    events_per_user: float,
    root_share: float,
    alpha: float,
    attenuation: float,
    days: int,
) -> tuple[pa.Table, pa.Table]: ...
def _panic_for_test() -> None: ...
def release_memory() -> int: ...
def cached_memory() -> int: ...
def available_memory() -> int | None: ...

@final
class Session:
    def attribute(
        self, user_id: int | str, amount: int | float, ts_ns: int | None = None
    ) -> list[tuple[int | str, int, Any]]: ...
    @property
    def amount_kind(self) -> tuple[str, int]: ...

def attribute(
    graph: ReferralGraph,
    events: Any,
    policy: Any,
    *,
    user_id: str,
    amount: str,
    ts: str | None,
    ts_required: bool,
    event_id: str | None,
    event_id_required: bool,
    on_invalid: str,
    progress: _ProgressFn | None = None,
    distributed: dict[str, Any] | None = None,
) -> tuple[pa.Table, pa.Table, dict[str, Any], pa.Table]: ...
def cap_sorted(beneficiary: Any, credit: Any, cap: Any) -> tuple[pa.Array, Any]: ...
def session(
    graph: ReferralGraph,
    policy: Any,
    history: Any | None,
    *,
    amount_kind: str,
    scale: int,
    user_id: str,
    amount: str,
    ts: str | None,
    ts_required: bool,
    event_id: str | None,
    event_id_required: bool,
) -> Session: ...
def reach(graph: ReferralGraph, max_depth: int) -> pa.Table: ...
def scores(
    graph: ReferralGraph,
    events: Any,
    *,
    max_depth: int,
    weights: list[float],
    unit_scale: bool,
    core_ppm: int,
    advocate_ppm: int,
    user_id: str,
    amount: str,
) -> pa.Table: ...
def pyramid(graph: ReferralGraph, events: Any | None, *, user_id: str, amount: str) -> pa.Table: ...
def channels(graph: ReferralGraph, events: Any, *, user_id: str, amount: str) -> pa.Table: ...
def metrics(
    graph: ReferralGraph, events: Any | None, *, user_id: str, amount: str
) -> dict[str, Any]: ...
def event_issues(
    graph: ReferralGraph,
    events: Any,
    *,
    user_id: str,
    amount: str,
    ts: str | None,
    ts_required: bool,
) -> pa.Table: ...

@final
class SocialGraph:
    @staticmethod
    def from_arrow(
        data: Any,
        *,
        src: str,
        dst: str,
        p_value: float | None,
        weighted_cascade: bool,
        p_column: str | None,
        on_invalid: str,
        progress: _ProgressFn | None = None,
    ) -> SocialGraph: ...
    @staticmethod
    def from_referral(
        graph: ReferralGraph, *, p_value: float | None, weighted_cascade: bool
    ) -> SocialGraph: ...
    @property
    def num_nodes(self) -> int: ...
    @property
    def num_edges(self) -> int: ...
    @property
    def duplicate_edges(self) -> int: ...
    @property
    def self_loops(self) -> int: ...
    @property
    def id_type(self) -> str: ...
    def save(self, path: str) -> None: ...
    @staticmethod
    def load(path: str) -> SocialGraph: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes) -> SocialGraph: ...
    @property
    def nbytes(self) -> int: ...
    def issues(self) -> pa.Table: ...
    def user_ids(self) -> pa.Array: ...
    def edges(self) -> pa.Table: ...
    def reach(
        self, k: int, method: str, precision: int, progress: _ProgressFn | None = None
    ) -> tuple[pa.Table, str, int | None]: ...
    def spread(
        self,
        seeds: Any,
        *,
        model: str,
        simulations: int,
        seed: int,
        max_hops: int | None,
        progress: _ProgressFn | None = None,
    ) -> tuple[float, float]: ...
    def seeds(
        self,
        k: int,
        *,
        model: str,
        epsilon: float,
        ell: float,
        seed: int,
        candidates: Any | None,
        max_hops: int | None,
        progress: _ProgressFn | None = None,
    ) -> tuple[pa.Table, dict[str, Any]]: ...

def synthetic_social(nodes: int, edges: int, exponent: float, seed: int) -> pa.Table: ...
