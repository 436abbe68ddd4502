"""The benchmarks' one timing helper: the best of N wall times (a shared machine only slows runs)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any


def best(fn: Callable[[], Any], repeat: int) -> float:
    """The fastest of ``repeat`` calls of ``fn``, in seconds (``BENCH_DEBUG=1`` prints them all)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    if os.environ.get("BENCH_DEBUG"):
        print("   ", [round(t * 1000, 1) for t in times], file=sys.stderr)
    return min(times)
