"""Files in and out, for the command line and batch jobs.

Inputs are read through :mod:`pyarrow.dataset`, so a single parquet, CSV or
Arrow IPC file and a folder of parquet parts (a real export) work alike,
and they are streamed to the engine batch by batch rather than loaded into
one Python object first. Outputs are parquet, written to a temporary file
beside the target and renamed into place, so an interrupted run never
leaves a partial file behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

Format = Literal["parquet", "csv", "ipc"]

_BY_SUFFIX: dict[str, Format] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".arrow": "ipc",
    ".feather": "ipc",
    ".ipc": "ipc",
}


def guess_format(path: str | os.PathLike[str]) -> Format:
    """The format of a file by its extension; a folder is read as parquet
    parts (or as the format of the files in it, when they all agree)."""
    p = Path(path)
    if p.is_dir():
        kinds = {_BY_SUFFIX.get(f.suffix.lower()) for f in p.rglob("*") if f.is_file()}
        kinds.discard(None)
        return kinds.pop() if len(kinds) == 1 else "parquet"  # type: ignore[return-value]
    fmt = _BY_SUFFIX.get(p.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"cannot tell the format of {str(path)!r} from its extension; "
            "pass --format parquet|csv|ipc"
        )
    return fmt


def dataset(path: str | os.PathLike[str], fmt: Format | None = None) -> ds.Dataset:
    """A :class:`pyarrow.dataset.Dataset` over a file or a folder of parts."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file or folder: {str(path)!r}")
    fmt = fmt or guess_format(p)
    if fmt == "csv" and p.suffix.lower() == ".tsv":
        return ds.dataset(
            p, format=ds.CsvFileFormat(parse_options=pacsv.ParseOptions(delimiter="\t"))
        )
    return ds.dataset(p, format=fmt)


def reader(
    path: str | os.PathLike[str], fmt: Format | None = None, columns: list[str] | None = None
) -> pa.RecordBatchReader:
    """A stream of record batches (for the engine's ``from_arrow`` and
    ``attribute``, which take any Arrow stream)."""
    d = dataset(path, fmt)
    if columns is not None:
        columns = [c for c in columns if c in d.schema.names]
    return d.scanner(columns=columns).to_reader()


def read_table(path: str | os.PathLike[str], fmt: Format | None = None) -> pa.Table:
    """The whole table (for inputs used by several passes)."""
    return dataset(path, fmt).to_table()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it into place when
    the block succeeds and removes it when it fails (Ctrl-C included)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_parquet(table: pa.Table, path: str | os.PathLike[str]) -> Path:
    """Writes ``table`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def sibling(path: str | os.PathLike[str], suffix: str) -> Path:
    """``ledger.parquet`` -> ``ledger.<suffix>.parquet`` (e.g. issues, totals)."""
    p = Path(path)
    stem = p.name[: -len(p.suffix)] if p.suffix else p.name
    return p.with_name(f"{stem}.{suffix}{p.suffix or '.parquet'}")
