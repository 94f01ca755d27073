"""Type stubs for the Rust extension module (kept in step with src/)."""

from typing import Any

import pyarrow as pa

__version__: str

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
