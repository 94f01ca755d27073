"""Shared helpers for the benchmarks: timing medians and peak memory."""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 0) -> tuple[float, Any]:
    """Median wall time of `repeats` calls after `warmup` untimed ones, and
    the last result."""
    for _ in range(warmup):
        fn()
    times = []
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        del out
        out = None
    out = fn()
    return statistics.median(times), out


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak() -> None:
    """Resets VmHWM (Linux >= 4.0), so the next peak is measured from now."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def peak_during(fn: Callable[[], Any]) -> tuple[int, Any]:
    """Peak RSS above the current RSS while `fn` runs (result kept alive).
    Blocks referralgraph keeps for reuse are given back first: reusing them
    would hide the call's own peak."""
    import referralgraph as rg

    rg.release_memory()
    base = rss_bytes()
    reset_peak()
    out = fn()
    return peak_bytes() - base, out


class _Tee:
    def __init__(self, *streams: Any) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


@contextlib.contextmanager
def tee_stdout(path: str | None) -> Iterator[None]:
    """Everything printed inside also goes to `path` (None: stdout only),
    so saved results are the bench's own output, not a copy by hand."""
    if path is None:
        yield
        return
    with open(path, "w") as f:
        out = sys.stdout
        sys.stdout = _Tee(out, f)  # type: ignore[assignment]
        try:
            yield
        finally:
            sys.stdout = out
