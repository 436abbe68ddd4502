"""Value statistics computed where the data lives.

A tensor is never copied whole: statistics come from whole-tensor reductions (which make no
temporaries) or from chunks far smaller than the tensor, and every number is gathered to the
host in a single transfer (one device sync).  Above a size budget a fixed-seed random sample is
used instead and the result says so.  The user's random number generators are never touched.
"""

from __future__ import annotations

import math
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

#: Elements above which statistics are sampled rather than exact.
DEFAULT_BUDGET = 2**27
#: How many elements a sample holds.
SAMPLE_SIZE = 2**20
#: Elements per chunk for the chunked passes on the CPU.
CPU_CHUNK = 2**20


@dataclass
class ValueStats:
    """Statistics of an array's values (``None`` where a number does not exist)."""

    min: float | int | bool | None
    max: float | int | bool | None
    mean: float | None
    std: float | None
    nan: int
    posinf: int
    neginf: int
    zeros: int
    exact: bool
    sample_size: int | None
    count: int
    over: str


def _chunk_size(t: torch.Tensor) -> int:
    if t.device.type == "cpu":
        return CPU_CHUNK
    # On an accelerator, fewer and larger chunks (kernel launches are the cost), still small.
    return int(min(max(t.numel() // 32, CPU_CHUNK), 2**26))


def iter_chunks(t: torch.Tensor, max_elems: int) -> Iterator[torch.Tensor]:
    """Yield 1-D pieces that cover every element of ``t`` once, each at most ``max_elems``.

    Dense tensors (any dim order) are split as views; other layouts are split along their
    outer dimensions so that any copy made by ``reshape`` is at most ``max_elems`` elements.
    """
    while t.dim() > 0 and t.shape[0] == 1:
        t = t[0]
    n = t.numel()
    if n == 0:
        return
    if n <= max_elems:
        yield t.reshape(-1)
        return
    order = sorted(range(t.dim()), key=lambda d: t.stride(d), reverse=True)
    dense = t.permute(order)
    if dense.is_contiguous():
        flat = dense.view(-1)
        for start in range(0, n, max_elems):
            yield flat[start : start + max_elems]
        return
    per_row = n // t.shape[0]
    step = max(1, max_elems // per_row)
    for start in range(0, t.shape[0], step):
        yield from iter_chunks(t[start : start + step], max_elems)


def sample_values(t: torch.Tensor, k: int) -> torch.Tensor:
    """A fixed-seed random sample of ``k`` elements of a strided tensor (with replacement).

    Offsets are computed from the strides and read straight from the storage, so nothing the
    size of ``t`` is made, and a private generator leaves the user's RNG state alone.
    """
    gen = torch.Generator(device=t.device)
    gen.manual_seed(0)
    idx = torch.randint(0, t.numel(), (k,), generator=gen, device=t.device)
    offsets = torch.zeros(k, dtype=torch.int64, device=t.device)
    rest = idx
    for size, stride in zip(reversed(t.shape), reversed(t.stride())):
        offsets += (rest % size) * stride
        rest = rest // size
    span = sum((s - 1) * st for s, st in zip(t.shape, t.stride()) if st > 0) + 1
    lowest = sum((s - 1) * st for s, st in zip(t.shape, t.stride()) if st < 0)
    flat = t.as_strided((span - lowest,), (1,), t.storage_offset() + lowest)
    return flat[offsets - lowest]


def _as_float64(chunk: torch.Tensor) -> torch.Tensor:
    if chunk.is_complex():
        return chunk.abs().to(torch.float64)
    return chunk.to(torch.float64)


def _gather(values: list[torch.Tensor]) -> list[float | int]:
    """Bring 0-d tensors to the host in one transfer, ints exact, floats as floats."""
    device = values[0].device
    packed = []
    is_float = []
    for v in values:
        v = v.reshape(())
        if v.is_floating_point():
            packed.append(v.to(torch.float64).view(torch.int64))
            is_float.append(True)
        else:
            packed.append(v.to(torch.int64))
            is_float.append(False)
    raw = torch.stack(packed).to(device).tolist()  # the single device sync
    return [
        struct.unpack("<d", struct.pack("<q", r))[0] if f else r for r, f in zip(raw, is_float)
    ]


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _fast_float_stats(t: torch.Tensor) -> ValueStats | None:
    """Two whole-tensor passes (aminmax, var_mean) on the CPU; None if non-finite values exist."""
    mn, mx = torch.aminmax(t)
    lo, hi = float(mn), float(mx)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    var, mean = torch.var_mean(t)
    n = t.numel()
    zeros = 0
    if lo <= 0.0 <= hi:
        zeros = n - sum(int(torch.count_nonzero(c)) for c in iter_chunks(t, CPU_CHUNK))
    std = math.sqrt(max(float(var), 0.0)) if n > 1 else None
    return ValueStats(lo, hi, float(mean), std, 0, 0, 0, zeros, True, None, n, "values")


def _chunked_stats(t: torch.Tensor, over: str) -> ValueStats:
    """Every statistic from small chunks, accumulated on the device, gathered once."""
    device = t.device
    f64 = dict(dtype=torch.float64, device=device)
    i64 = dict(dtype=torch.int64, device=device)
    inf = torch.tensor(math.inf, **f64)
    nan = torch.zeros((), **i64)
    posinf = torch.zeros((), **i64)
    neginf = torch.zeros((), **i64)
    zeros = torch.zeros((), **i64)
    finite_n = torch.zeros((), **i64)
    s1 = torch.zeros((), **f64)
    s2 = torch.zeros((), **f64)
    lo = inf.clone()
    hi = -inf
    pivot: torch.Tensor | None = None
    is_int = not (t.is_floating_point() or t.is_complex())
    ilo = ihi = None
    if is_int and t.dtype != torch.bool:
        try:
            ilo, ihi = torch.aminmax(t)  # exact integers, no temporaries
        except (RuntimeError, NotImplementedError):
            ilo = ihi = None
    for chunk in iter_chunks(t, _chunk_size(t)):
        v = _as_float64(chunk)
        if is_int:
            finite = None
            fin_v = v
            finite_n += v.numel()
        else:
            isnan = torch.isnan(v)
            nan += isnan.sum()
            posinf += torch.isposinf(v).sum()
            neginf += torch.isneginf(v).sum()
            finite = torch.isfinite(v)
            finite_n += finite.sum()
            fin_v = torch.where(finite, v, 0.0)
        zeros += (v == 0).sum()
        if pivot is None:
            pivot = (fin_v.sum() / torch.clamp(finite_n, min=1)).to(torch.float64)
        shifted = fin_v - pivot
        if finite is not None:
            shifted = torch.where(finite, shifted, 0.0)
        s1 += shifted.sum()
        s2 += (shifted * shifted).sum()
        if finite is None:
            lo = torch.minimum(lo, v.min())
            hi = torch.maximum(hi, v.max())
        else:
            lo = torch.minimum(lo, torch.where(finite, v, inf).min())
            hi = torch.maximum(hi, torch.where(finite, v, -inf).max())
    if pivot is None:
        pivot = torch.zeros((), **f64)
    parts = [lo, hi, s1, s2, pivot, nan, posinf, neginf, zeros, finite_n]
    if ilo is not None:
        parts += [ilo, ihi]
    got = _gather(parts)
    lo_v, hi_v, s1_v, s2_v, piv, n_nan, n_pos, n_neg, n_zero, n = got[:10]
    mean = std = None
    if n > 0:
        mean = piv + s1_v / n
        if n > 1:
            var = max((s2_v - s1_v * s1_v / n) / (n - 1), 0.0)
            std = math.sqrt(var)
    mn: float | int | bool | None = _finite_or_none(lo_v) if n else None
    mx: float | int | bool | None = _finite_or_none(hi_v) if n else None
    if ilo is not None:
        mn, mx = got[10], got[11]
    elif t.dtype == torch.bool and n:
        mn, mx = bool(lo_v), bool(hi_v)
    elif is_int and n and mn is not None and mx is not None:
        mn, mx = int(mn), int(mx)
    return ValueStats(
        mn, mx, mean, std, n_nan, n_pos, n_neg, n_zero, True, None, t.numel(), over
    )


def tensor_stats(t: torch.Tensor, budget: int = DEFAULT_BUDGET, over: str = "values") -> ValueStats:
    """Statistics of a dense strided tensor's values (|z| for complex), exact up to ``budget``."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        t = t.detach()
        if t.is_complex():
            over = "|z| of the complex values"
        elif t.dtype == torch.bool:
            over = "values (True = 1)"
        n = t.numel()
        if n > budget:
            sample = sample_values(t, min(SAMPLE_SIZE, budget))
            s = _chunked_stats(sample, over)
            s.exact = False
            s.sample_size = sample.numel()
            s.count = n
            return s
        if (
            t.device.type == "cpu"
            and t.is_floating_point()
            and t.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16)
            and n > 0
        ):
            fast = _fast_float_stats(t)
            if fast is not None:
                return fast
        return _chunked_stats(t, over)


def numpy_stats(a: np.ndarray, budget: int = DEFAULT_BUDGET) -> ValueStats | None:
    """Statistics of a NumPy array's values, through a zero-copy torch view where possible.

    Returns None for arrays with no numeric meaning (object, strings, datetimes).
    """
    if a.dtype.kind not in "biufc":
        return None
    view = a
    for axis in range(a.ndim):
        if a.strides[axis] < 0:  # order does not matter to statistics: flip to a view
            view = np.flip(view, axis)
    target = None
    if not view.dtype.isnative:
        target = view.dtype.newbyteorder("=")
    if view.dtype.kind == "f" and view.dtype.itemsize > 8:  # longdouble: torch has no twin
        target = np.dtype(np.float64)
    if target is not None:
        if view.size <= budget:
            view = view.astype(target)
        else:  # converting would copy the whole array: sample instead
            idx = np.random.default_rng(0).integers(0, view.size, min(SAMPLE_SIZE, budget))
            sample = np.ascontiguousarray(view[np.unravel_index(idx, view.shape)]).astype(target)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s = tensor_stats(torch.from_numpy(sample), budget)
            s.exact, s.sample_size, s.count = False, int(sample.size), int(a.size)
            return s
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tensor_stats(torch.from_numpy(view), budget)


@dataclass
class Histogram:
    """Counts of values in equal-width bins between ``edges[0]`` and ``edges[-1]``."""

    edges: list[float]
    counts: list[int]
    sampled: bool
    integer: bool = False  # one bin per integer value: bin i holds edges[0] + i


def value_histogram(t: torch.Tensor, lo: float | None, hi: float | None, bins: int = 12) -> Histogram | None:
    """A histogram of the finite values (from a sample above ``SAMPLE_SIZE`` elements)."""
    if lo is None or hi is None or t.numel() == 0 or t.dtype == torch.bool:
        return None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        t = t.detach()
        sampled = t.numel() > SAMPLE_SIZE
        values = sample_values(t, SAMPLE_SIZE) if sampled else t.reshape(-1)
        v = _as_float64(values)
        v = v[torch.isfinite(v)]
        lo, hi = float(lo), float(hi)
        if hi <= lo:
            return Histogram([lo, hi], [int(v.numel())], sampled)
        if not (t.is_floating_point() or t.is_complex()) and hi - lo + 1 <= bins:
            width = int(hi - lo) + 1
            counts = torch.histc(v, bins=width, min=lo - 0.5, max=hi + 0.5).to(torch.int64).tolist()
            return Histogram([lo + i for i in range(width + 1)], counts, sampled, integer=True)
        counts = torch.histc(v, bins=bins, min=lo, max=hi).to(torch.int64).tolist()
        step = (hi - lo) / bins
        return Histogram([lo + i * step for i in range(bins + 1)], counts, sampled)
