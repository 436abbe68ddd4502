"""Statistics on the CPU without the C helper (or where it has no kernel): pure torch.

With the C helper (:mod:`.fused`) every common dtype and layout takes its one pass; these are
the paths without it: dense float32/float64 take :func:`pure_float_stats` (the C pass's
arithmetic in torch over cache-sized chunks), everything else (integers, bool, half types,
complex, non-finite values, other layouts) takes :func:`cpu_stats`, a few passes over each
small chunk.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from tensormagic.engine.tensorinfo.statistics.values import (
    SIGN_BIT,
    ValueStats,
    as_float64,
    centring_pivot,
    mean_std,
    scale_exponent,
)

#: Elements per chunk of the pure float loop (its float64 scratch, 512 KiB, fits the L2 cache).
FAST_CHUNK = 2**16


def pure_float_stats(flat: torch.Tensor) -> ValueStats | None:
    """The C pass's statistics in torch, over cache-sized chunks: None if non-finite values exist.

    Each chunk is widened into one float64 scratch buffer (``FAST_CHUNK`` elements, 512 KiB),
    centred on :func:`centring_pivot`, and its min, max, zero count, sum and sum of squares are taken
    there, all in float64: the mean and std are as accurate as the C pass's (a float32 ``dot``
    would round every partial sum to float32, and how much depends on the CPU's kernels).
    """
    n = flat.numel()
    pivot = float(centring_pivot(flat))
    chunks = range(0, n, FAST_CHUNK)
    # One scratch buffer and preallocated results: a fresh temporary per chunk would let the
    # small result tensors split its freed block, and the heap would grow chunk by chunk.
    scratch = torch.empty(min(n, FAST_CHUNK), dtype=torch.float64)
    table = torch.empty(len(chunks), 4, dtype=torch.float64)  # min, max, sum, sum of squares
    nonzero = torch.empty(len(chunks), dtype=torch.int64)
    for i, start in enumerate(chunks):
        chunk = flat[start : start + FAST_CHUNK]
        d = scratch[: chunk.numel()].copy_(chunk)
        torch.amin(d, dim=0, out=table[i, 0])
        torch.amax(d, dim=0, out=table[i, 1])
        nonzero[i] = torch.count_nonzero(d)
        d.sub_(pivot)
        torch.sum(d, dim=0, out=table[i, 2])
        torch.dot(d, d, out=table[i, 3])
    lo, hi = float(table[:, 0].min()), float(table[:, 1].max())
    s1, s2 = (float(v) for v in table[:, 2:].sum(0))
    if not all(math.isfinite(v) for v in (lo, hi, s1, s2)):
        return None
    mean, std = mean_std(pivot, s1, s2, n)
    return ValueStats(min=lo, max=hi, mean=mean, std=std, nan=0, posinf=0, neginf=0, zeros=n - int(nonzero.sum()), exact=True, sample_size=None, count=n, over="values")


def cpu_stats(chunks: Iterable[torch.Tensor], kind: str, over: str) -> ValueStats:
    """Every statistic from small CPU chunks, in few passes each, accumulated in Python.

    On the CPU a host read costs nothing, so each chunk first takes the common path (all values
    finite: a float64 copy, aminmax, count_nonzero, sum and dot) and masks non-finite values (in
    place, on that copy) only when it has some.  Integer min/max are exact (int64; uint64 through
    a sign-bit flip).
    """
    total = finite_n = n_nan = n_pos = n_neg = zeros = 0
    lo: Any = None
    hi: Any = None
    pivot: float | None = None
    s1 = s2 = 0.0
    exponent = 0  # the sums are of values scaled by 2**-exponent (0 unless values are huge)
    for chunk in chunks:
        chunk = chunk.reshape(-1)
        m = chunk.numel()
        if m == 0:
            continue
        total += m
        bad: torch.Tensor | None = None  # where a float chunk is not finite (None: all finite)
        cmin: float  # the chunk's extremes (ints for integer dtypes)
        cmax: float
        if kind == "uint64":
            as_i = chunk.view(torch.int64) ^ SIGN_BIT  # order-preserving, exact
            cmin, cmax = (int(v) - SIGN_BIT for v in torch.aminmax(as_i))
            zeros += int((as_i == SIGN_BIT).sum())
            del as_i
            d = chunk.to(torch.float64)
            fin = m
        elif kind in ("int", "bool"):
            as_i = chunk.to(torch.int64)
            cmin, cmax = (int(v) for v in torch.aminmax(as_i))
            zeros += m - int(torch.count_nonzero(as_i))
            del as_i
            d = chunk.to(torch.float64)
            fin = m
        else:
            d = as_float64(chunk)
            if d.data_ptr() == chunk.data_ptr():
                d = d.clone()  # float64 input: never modify the user's data below
            cmin, cmax = (float(v) for v in torch.aminmax(d))  # NaN and inf propagate here
            zeros += m - int(torch.count_nonzero(d))  # NaN and inf are not zeros
            fin = m
            if not (math.isfinite(cmin) and math.isfinite(cmax)):
                # Masked in place on our own copy (boolean indexing would be far slower).
                bad = ~torch.isfinite(d)
                chunk_nan = int(torch.isnan(d).sum())
                chunk_pos = int((d == math.inf).sum())
                fin = m - int(bad.sum())
                n_nan += chunk_nan
                n_pos += chunk_pos
                n_neg += m - fin - chunk_nan - chunk_pos
                if fin:
                    cmin = float(d.masked_fill_(bad, math.inf).min())
                    cmax = float(d.masked_fill_(bad, -math.inf).max())
        if fin == 0:
            continue
        finite_n += fin
        lo = cmin if lo is None else min(lo, cmin)
        hi = cmax if hi is None else max(hi, cmax)
        grown = scale_exponent(max(abs(float(cmin)), abs(float(cmax))))
        if grown > exponent:  # huge values: rescale what was summed so far to the new scale
            s1, s2 = math.ldexp(s1, exponent - grown), math.ldexp(s2, 2 * (exponent - grown))
            exponent = grown
        scale = math.ldexp(1.0, -exponent)
        if exponent:
            d.mul_(scale)  # exact: a power of two
        if pivot is None:
            first = d.masked_fill(bad, 0.0).sum() if bad is not None else d.sum()
            pivot = float(first) / fin / scale
        if bad is not None:
            d.masked_fill_(bad, pivot * scale)  # contributes 0 to both sums below
        d.sub_(pivot * scale)  # d is always this function's own float64 copy
        s1 += float(d.sum())
        s2 += float(torch.dot(d, d))
    mean, std = mean_std(pivot if pivot is not None else 0.0, s1, s2, finite_n, math.ldexp(1.0, -exponent))
    if kind == "bool" and lo is not None:
        lo, hi = bool(lo), bool(hi)
    return ValueStats(min=lo, max=hi, mean=mean, std=std, nan=n_nan, posinf=n_pos, neginf=n_neg, zeros=zeros, exact=True, sample_size=None, count=total, over=over)
