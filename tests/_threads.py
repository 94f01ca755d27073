"""Runs a script under several rayon thread counts (fresh processes: the
pool size is fixed at first use)."""

from __future__ import annotations

import subprocess
import sys


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
