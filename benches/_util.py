"""Shared helpers for the benchmarks: timing medians and peak memory."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of `repeats` calls, and the last result."""
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
    """Peak RSS above the current RSS while `fn` runs (result kept alive)."""
    base = rss_bytes()
    reset_peak()
    out = fn()
    return peak_bytes() - base, out
