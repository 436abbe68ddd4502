"""The mean of integers too large for float64 sums, exactly: integer sums of 32-bit halves.

A float64 sum of int64 values is exact only while every partial sum stays below 2**53; past that
the mean of ``[2**62 + 1, 2**62 + 3, -2**63]`` comes out 0.0 (true: 4/3).  Where the values'
magnitude times their count reaches 2**53, the mean is recomputed from the exact sum: each value
split into its high and low 32 bits, both summed in int64 on the tensor's device (no overflow
for chunks under 2**31 elements), joined as a Python int, divided with correct rounding.  It
runs when a value is not exactly a float64 (|x| >= 2**53), and for up to 2**24 values when
their magnitude times their count reaches 2**53; small integers (the usual case) and long
arrays of float64-exact integers (whose centred float64 sums are exact to float64 rounding) take
no extra pass.
"""

from __future__ import annotations

import numpy as np
import torch

from tensormagic.engine.tensorinfo.statistics.chunks import iter_chunks
from tensormagic.engine.tensorinfo.statistics.values import ValueStats

#: A float64 sum of integers is exact below this magnitude.
EXACT_FLOAT_SUM = 2**53
_WIDE = (torch.int64, torch.uint64, torch.int32, torch.uint32)
_CHUNK = 1 << 24


def needs_exact_mean(s: ValueStats, dtype: torch.dtype) -> bool:
    """Whether the float64 mean of these integer statistics may be rounded."""
    if dtype not in _WIDE or not s.exact or s.mean is None or s.min is None or s.max is None or s.count == 0:
        return False
    largest = max(abs(int(s.min)), abs(int(s.max)))
    return largest >= EXACT_FLOAT_SUM or (s.count <= _CHUNK and largest * s.count >= EXACT_FLOAT_SUM)


def exact_integer_mean(t: torch.Tensor, s: ValueStats) -> ValueStats:
    """``s`` with its mean recomputed exactly when a float64 sum could have rounded it."""
    if not needs_exact_mean(s, t.dtype):
        return s
    unsigned = t.dtype in (torch.uint64, torch.uint32)
    total = 0
    with torch.no_grad():
        for chunk in iter_chunks(t.detach(), _CHUNK):
            c = chunk.reshape(-1)
            if t.dtype == torch.uint64:
                c = c.view(torch.int64)
                total += int((c < 0).sum()) << 64  # the values the int64 view shows negative
            elif unsigned or t.dtype == torch.int32:
                c = c.to(torch.int64)
            total += (int((c >> 32).sum()) << 32) + int((c & 0xFFFFFFFF).sum())
    s.mean = total / s.count  # int / int: correctly rounded
    return s


def exact_array_mean(a: np.ndarray, s: ValueStats | None) -> ValueStats | None:
    """:func:`exact_integer_mean` of a NumPy array (through a zero-copy view where torch has one)."""
    if s is None or a.dtype.kind not in "iu" or a.dtype.itemsize < 4:
        return s
    try:
        view = torch.from_numpy(np.ascontiguousarray(a) if not a.flags.c_contiguous and a.size <= _CHUNK else a)
    except (TypeError, ValueError, RuntimeError):
        return s
    return exact_integer_mean(view, s)


__all__ = ["EXACT_FLOAT_SUM", "exact_array_mean", "exact_integer_mean", "needs_exact_mean"]
