"""The optional C helper (``_fused.c``): one multi-threaded pass over a dense CPU buffer.

``_fused`` is None when the extension is not built (no compiler at install time) or when the
environment variable ``TENSORMAGIC_NO_C_HELPER`` is set (to run everything on the pure path);
every caller then takes the pure torch path in :mod:`.cpu`, which gives the same numbers.
"""

from __future__ import annotations

import math
import os

import torch

from tensormagic.engine.tensorinfo.statistics.values import ValueStats, centring_pivot, mean_std

try:  # built by setup.py when a C compiler is there; None: the pure torch/NumPy paths
    from tensormagic.engine.tensorinfo.statistics import _fused
except ImportError:  # pragma: no cover - depends on the build
    _fused = None
if os.environ.get("TENSORMAGIC_NO_C_HELPER"):
    _fused = None

#: Elements from which the C pass runs on torch's thread count rather than one thread: a new
#: thread costs some 50 us and its own copy of every loaded library's thread-local storage (about
#: half a MiB with torch loaded), which would be 10% of a 1e6-element float32 tensor.
FUSED_THREADS_MIN = 2**23


def available() -> bool:
    """True when the C helper is built (and not switched off)."""
    return _fused is not None


def cpu_moments(t: torch.Tensor, pivot: float = 0.0, threads: int = 1) -> tuple[float, float, float, float, int] | None:
    """``(min, max, sum(t - pivot), sum((t - pivot)**2), zeros)`` of a contiguous float32/float64
    CPU tensor in one pass of the C helper, sums in float64; None where the helper does not apply
    (not built, another dtype, device or layout, a negative-bit view).  NaN/inf propagate into the
    result: check it with ``math.isfinite``."""
    if _fused is None or t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64) or t.layout != torch.strided or not t.is_contiguous():
        return None
    try:
        return _fused.moments(t.detach().numpy(), pivot, threads)
    except (RuntimeError, TypeError, ValueError):
        return None


def fused_float_stats(flat: torch.Tensor) -> ValueStats | None:
    """float32/float64 on the CPU through the C helper: one pass, on torch's thread count.

    Sums of the values centred on :func:`centring_pivot`, and of their squares, accumulate in float64,
    so the mean and std are as accurate as NumPy's float64 ones.  None if non-finite values (or
    squares beyond float64) occur.
    """
    n = flat.numel()
    pivot = float(centring_pivot(flat))
    threads = torch.get_num_threads() if n >= FUSED_THREADS_MIN else 1
    got = cpu_moments(flat, pivot, threads)
    if got is None:
        return None
    lo, hi, s1, s2, zeros = got
    if not all(math.isfinite(v) for v in (lo, hi, s1, s2)):
        return None
    mean, std = mean_std(pivot, s1, s2, n)
    return ValueStats(lo, hi, mean, std, 0, 0, 0, zeros, True, None, n, "values")
