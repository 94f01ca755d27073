"""Runs a script under several rayon thread counts (fresh processes: the
pool size is fixed at first use)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable


def outputs_per_thread_count(script: str, counts: tuple[str, ...] = ("1", "2", "3")) -> set[str]:
    """The distinct stdouts of ``script`` run with each RAYON_NUM_THREADS."""
    return {
        subprocess.run(
            [sys.executable, "-c", script],
            env={"RAYON_NUM_THREADS": threads, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for threads in counts
    }


def assert_releases_the_gil(call: Callable[[], object]) -> None:
    """A Python thread keeps counting while ``call`` runs. Were the GIL held,
    it would make (almost) no progress until the call returned: its progress
    during the call is compared with its rate while the main thread sleeps."""
    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    t = threading.Thread(target=count)
    t.start()
    try:
        before, t0 = ticks, time.perf_counter()
        time.sleep(0.2)  # the main thread sleeps: the counter has the GIL
        rate = (ticks - before) / (time.perf_counter() - t0)
        before, t0 = ticks, time.perf_counter()
        call()
        during, elapsed = ticks - before, time.perf_counter() - t0
    finally:
        done.set()
        t.join()
    assert during > 0.2 * rate * elapsed, (during, rate, elapsed)
