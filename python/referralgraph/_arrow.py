"""Accepting any Arrow-like table: objects with ``__arrow_c_stream__``
(pyarrow, polars, DuckDB, nanoarrow) go straight to Rust; a pandas
DataFrame goes through ``pyarrow.Table.from_pandas``."""

from __future__ import annotations

from typing import Any

import pyarrow as pa


def as_stream(data: Any, what: str) -> Any:
    """Returns an object that exports ``__arrow_c_stream__``, or raises TypeError."""
    if hasattr(data, "__arrow_c_stream__"):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    mod = type(data).__module__
    if mod.startswith("pandas") and hasattr(data, "columns"):
        return pa.Table.from_pandas(data, preserve_index=False)
    if mod.startswith("duckdb") and hasattr(data, "arrow"):
        return data.arrow()
    raise TypeError(
        f"{what} must be an Arrow-compatible table (pyarrow Table or RecordBatchReader, "
        f"polars or pandas DataFrame, DuckDB result), not {type(data).__name__}"
    )
