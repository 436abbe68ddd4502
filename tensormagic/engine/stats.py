"""Value statistics computed where the data lives.

A tensor is never copied whole: statistics come from whole-tensor reductions (which make no
temporaries) or from chunks far smaller than the tensor, and every number is gathered to the
host in a single transfer (one device sync).  Above a size budget a fixed-seed random sample
is used instead and the result says so.  The user's random number generators are never touched.

Dense float32/float64 CPU tensors take one fused, multi-threaded pass in C (``_fused``, built
with the package; optional) and otherwise a pure torch/NumPy loop over cache-sized chunks.
"""

from __future__ import annotations

import math
import struct
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

try:  # the optional C helper (setup.py builds it); None: the pure torch/NumPy paths
    from tensormagic.engine import _fused
except ImportError:  # pragma: no cover - depends on the build
    _fused = None

#: Elements above which statistics are sampled rather than exact.
DEFAULT_BUDGET = 2**27
#: How many elements a sample holds.
SAMPLE_SIZE = 2**18
#: Elements per chunk for the chunked passes on the CPU (a float64 copy of one is 1 MiB).
CPU_CHUNK = 2**17
#: Elements a histogram is drawn from at most (a sample above it).
HIST_SAMPLE = 2**16
#: Indices drawn at a time when sampling on the CPU (int64 temporaries of some 100 KiB), and on
#: an accelerator (fewer kernel launches; a few MiB).
SAMPLE_BLOCK = 2**12
DEVICE_SAMPLE_BLOCK = 2**16
#: Elements per chunk of the pure float loop (its float64 scratch, 512 KiB, fits the L2 cache).
FAST_CHUNK = 2**16
#: Elements from which the C pass runs on torch's thread count rather than one thread: a new
#: thread costs some 50 us and its own copy of every loaded library's thread-local storage (about
#: half a MiB with torch loaded), which would be 10% of a 1e6-element float32 tensor.
FUSED_THREADS_MIN = 2**23
#: Elements of the strided sample whose mean is the centring pivot of the fast paths.
PIVOT_SAMPLE = 4096
#: The accelerator path's scratch (a float64 copy of a chunk and a boolean mask, 9 bytes an
#: element) stays under this share of the tensor's bytes, or under DEVICE_SCRATCH_FLOOR bytes,
#: whichever is larger.
DEVICE_SCRATCH_SHARE = 0.03
DEVICE_SCRATCH_FLOOR = 8 * 2**20


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
    # On an accelerator, chunks as large as the memory goal allows (kernel launches are the
    # cost): each chunk's few float64 temporaries stay near 2% of the tensor's own bytes.
    return int(min(max(t.numel() * t.element_size() // 2000, 2**16), 2**26))


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


def _take(flat: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``flat[index]``, through ``index_select`` (several times faster) where the dtype has it."""
    try:
        return flat.index_select(0, index)
    except (NotImplementedError, RuntimeError):  # e.g. uint16/32/64 have no index_select kernel
        return flat[index]


def sample_values(t: torch.Tensor, k: int) -> torch.Tensor:
    """A fixed-seed random sample of ``k`` elements of a strided tensor (with replacement).

    Offsets are computed from the strides and read straight from the storage, a block of
    indices at a time, so nothing the size of ``t`` (or many times ``k``) is made, and a private
    generator leaves the user's RNG state alone.
    """
    dense = _dense_flat(t) if t.layout == torch.strided else None
    if dense is not None:  # any dense layout: a uniform sample of its 1-D view is one of t
        t = dense
    gen = torch.Generator(device=t.device)
    gen.manual_seed(0)
    span = sum((s - 1) * st for s, st in zip(t.shape, t.stride()) if st > 0) + 1
    lowest = sum((s - 1) * st for s, st in zip(t.shape, t.stride()) if st < 0)
    flat = t.as_strided((span - lowest,), (1,), t.storage_offset() + lowest)
    out = torch.empty(k, dtype=t.dtype, device=t.device)
    on_cpu = t.device.type == "cpu"
    unit = t.dim() == 1 and t.stride(0) == 1  # offsets are the drawn indices themselves
    rng = np.random.default_rng(0)  # private: the user's NumPy and torch RNGs are untouched
    block = SAMPLE_BLOCK if on_cpu else DEVICE_SAMPLE_BLOCK
    for start in range(0, k, block):
        m = min(block, k - start)
        if on_cpu:  # index arithmetic in NumPy: single-threaded, no parallel-region overhead
            rest = rng.integers(0, t.numel(), m, dtype=np.int64)
            if unit:
                offsets_np = rest
            else:
                offsets_np = np.full(m, -lowest, dtype=np.int64)
                for size, stride in zip(reversed(t.shape), reversed(t.stride())):
                    offsets_np += (rest % size) * stride
                    rest //= size
            out[start : start + m] = _take(flat, torch.from_numpy(offsets_np))
            continue
        rest_t = torch.randint(0, t.numel(), (m,), generator=gen, device=t.device)
        if unit:
            out[start : start + m] = _take(flat, rest_t)
            continue
        offsets = torch.full((m,), -lowest, dtype=torch.int64, device=t.device)
        for size, stride in zip(reversed(t.shape), reversed(t.stride())):
            offsets += (rest_t % size) * stride
            rest_t = rest_t // size
        out[start : start + m] = _take(flat, offsets)
    return out


def _as_float64(chunk: torch.Tensor) -> torch.Tensor:
    if chunk.is_complex():  # |z| computed in double precision (complex64's abs rounds to float32)
        return chunk.to(torch.complex128).abs()
    return chunk.to(torch.float64)


def pieces(t: torch.Tensor, max_elems: int, dim: int = 0) -> Iterator[torch.Tensor]:
    """Yield sub-tensors (``narrow`` views, dims kept) that cover ``t`` once, each small.

    Unlike :func:`iter_chunks` this never reshapes, so it works for quantized tensors (whose
    pieces are then dequantized one at a time) and any layout that supports ``narrow``.
    """
    n = t.numel()
    if n == 0:
        return
    if n <= max_elems or dim >= t.dim():
        yield t
        return
    size = t.shape[dim]
    per = n // size
    if per > max_elems:
        for i in range(size):
            yield from pieces(t.narrow(dim, i, 1), max_elems, dim + 1)
        return
    step = max(1, max_elems // per)
    for start in range(0, size, step):
        yield t.narrow(dim, start, min(step, size - start))


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


def _dense_flat(t: torch.Tensor) -> torch.Tensor | None:
    """A 1-D view of every element of ``t`` when its memory is dense in some dim order
    (contiguous, transposed, channels_last...); None when it has gaps or repeats."""
    if t.dim() == 0:
        return t.reshape(1)
    order = sorted(range(t.dim()), key=lambda d: t.stride(d), reverse=True)
    dense = t.permute(order)
    if dense.is_contiguous():
        return dense.view(-1)
    return None


def _mean_std(pivot: float, s1: float, s2: float, n: int) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1) of ``n`` values from the sums of ``x - pivot`` (``s1``) and of
    its square (``s2``); None where there are too few values."""
    if n <= 0:
        return None, None
    std = math.sqrt(max((s2 - s1 * s1 / n) / (n - 1), 0.0)) if n > 1 else None
    return pivot + s1 / n, std


def _pivot(flat: torch.Tensor) -> torch.Tensor:
    """The float64 mean of the finite values of an evenly spaced sample of ``flat`` (0 if it has
    none): 0-d, on its device, no sync.

    Centring on a value near the mean keeps the sums of squares accurate for data far from zero
    (e.g. 1e4 +- 1e-3), where the textbook sum(x**2) - n*mean**2 would cancel catastrophically.
    """
    sample = flat[:: max(1, flat.numel() // PIVOT_SAMPLE)][:PIVOT_SAMPLE].to(torch.float64)
    finite = torch.isfinite(sample)
    return torch.where(finite, sample, 0.0).sum() / finite.sum().clamp(min=1)


def _device_float_stats(flat: torch.Tensor, chunk: int | None = None) -> ValueStats:
    """Floating-point values on an accelerator, over a dense 1-D view: about twenty kernels per
    chunk, every result written into one preallocated table, and one host read at the end.

    Per chunk: the counts of zeros, NaN, +inf and -inf (comparisons written as 1.0/0.0 into the
    float64 scratch and summed: summing a boolean mask would make an int64 copy of it inside the
    reduction), the min and max of the finite values (non-finite ones replaced by +inf, then by
    -inf), and the sum and sum of squares of the finite values centred on :func:`_pivot` (the
    others replaced by 0).  Scratch: a float64 copy of a chunk and its boolean mask of non-finite
    values (see ``DEVICE_SCRATCH_SHARE``).  ``chunk`` overrides the chunk size (tests run this
    path on the CPU).
    """
    n = flat.numel()
    device = flat.device
    room = max(n * flat.element_size() * DEVICE_SCRATCH_SHARE, DEVICE_SCRATCH_FLOOR)
    size = int(min(n, chunk or max(room // 9, 1024)))
    count = -(-n // size)
    scratch = torch.empty(size, dtype=torch.float64, device=device)
    mask = torch.empty(size, dtype=torch.bool, device=device)
    pivot = _pivot(flat)
    # per chunk: sum, sum of squares, zeros, NaN, +inf, -inf, finite min, finite max
    table = torch.empty(count, 8, dtype=torch.float64, device=device)
    inf = math.inf
    for i, start in enumerate(range(0, n, size)):
        part = flat[start : start + size]
        d = scratch[: part.numel()]
        # non-finite where x - x is not 0 (torch.isfinite would make an abs() copy of the chunk)
        bad = torch.ne(torch.sub(part, part, out=d), 0, out=mask[: part.numel()])
        row = table[i]
        for column, other in ((2, 0.0), (4, inf), (5, -inf)):
            torch.sum(torch.eq(part, other, out=d), dim=0, out=row[column])
        torch.sum(torch.ne(part, part, out=d), dim=0, out=row[3])  # NaN != NaN
        torch.amin(d.copy_(part).masked_fill_(bad, inf), dim=0, out=row[6])
        torch.amax(d.copy_(part).masked_fill_(bad, -inf), dim=0, out=row[7])
        d.copy_(part).sub_(pivot).masked_fill_(bad, 0.0)
        torch.sum(d, dim=0, out=row[0])
        torch.dot(d, d, out=row[1])
    total = table[:, :6].sum(0)
    got = _gather([table[:, 6].min(), table[:, 7].max(), *total, pivot])  # the one device sync
    lo_v, hi_v, s1, s2, n_zero, n_nan, n_pos, n_neg, piv = got
    n_nan, n_pos, n_neg = int(n_nan), int(n_pos), int(n_neg)
    n_fin = n - n_nan - n_pos - n_neg
    mn, mx = (lo_v, hi_v) if n_fin else (None, None)
    mean, std = _mean_std(piv, s1, s2, n_fin)
    return ValueStats(mn, mx, mean, std, n_nan, n_pos, n_neg, int(n_zero), True, None, n, "values")


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


def _fused_float_stats(flat: torch.Tensor) -> ValueStats | None:
    """float32/float64 on the CPU through the C helper: one pass, on torch's thread count.

    Sums of the values centred on :func:`_pivot`, and of their squares, accumulate in float64,
    so the mean and std are as accurate as NumPy's float64 ones.  None if non-finite values (or
    squares beyond float64) occur.
    """
    n = flat.numel()
    pivot = float(_pivot(flat))
    threads = torch.get_num_threads() if n >= FUSED_THREADS_MIN else 1
    got = cpu_moments(flat, pivot, threads)
    if got is None:
        return None
    lo, hi, s1, s2, zeros = got
    if not all(math.isfinite(v) for v in (lo, hi, s1, s2)):
        return None
    mean, std = _mean_std(pivot, s1, s2, n)
    return ValueStats(lo, hi, mean, std, 0, 0, 0, zeros, True, None, n, "values")


def _fast_float_stats(flat: torch.Tensor) -> ValueStats | None:
    """float32/float64 on the CPU, over a dense 1-D view: None if non-finite values exist.

    With the C helper: :func:`_fused_float_stats`.  Without it, :func:`_pure_float_stats`, the
    same arithmetic in torch: every sum is accumulated in float64 around the same pivot, so
    both paths agree to float64 rounding whatever the CPU's vector kernels.
    """
    if _fused is not None and flat.is_contiguous():
        return _fused_float_stats(flat)
    return _pure_float_stats(flat)


def _pure_float_stats(flat: torch.Tensor) -> ValueStats | None:
    """The C pass's statistics in torch, over cache-sized chunks: None if non-finite values exist.

    Each chunk is widened into one float64 scratch buffer (``FAST_CHUNK`` elements, 512 KiB),
    centred on :func:`_pivot`, and its min, max, zero count, sum and sum of squares are taken
    there, all in float64: the mean and std are as accurate as the C pass's (a float32 ``dot``
    would round every partial sum to float32, and how much depends on the CPU's kernels).
    """
    n = flat.numel()
    pivot = float(_pivot(flat))
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
    mean, std = _mean_std(pivot, s1, s2, n)
    return ValueStats(lo, hi, mean, std, 0, 0, 0, n - int(nonzero.sum()), True, None, n, "values")


#: Flipping the sign bit maps uint64's order onto int64's (exact min/max with int64 kernels).
_SIGN_BIT = -(2**63)


def _kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    if dtype == torch.uint64:
        return "uint64"
    if dtype.is_complex:
        return "complex"
    if dtype.is_floating_point:
        return "float"
    return "int"


def _cpu_stats(chunks: Iterable[torch.Tensor], kind: str, over: str) -> ValueStats:
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
    for chunk in chunks:
        chunk = chunk.reshape(-1)
        m = chunk.numel()
        if m == 0:
            continue
        total += m
        bad: torch.Tensor | None = None  # where a float chunk is not finite (None: all finite)
        if kind == "uint64":
            as_i = chunk.view(torch.int64) ^ _SIGN_BIT  # order-preserving, exact
            cmin, cmax = (int(v) - _SIGN_BIT for v in torch.aminmax(as_i))
            zeros += int((as_i == _SIGN_BIT).sum())
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
            d = _as_float64(chunk)
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
        if pivot is None:
            pivot = float(d.masked_fill(bad, 0.0).sum()) / fin if bad is not None else float(d.mean())
        if bad is not None:
            d.masked_fill_(bad, pivot)  # contributes 0 to both sums below
        d.sub_(pivot)  # d is always this function's own float64 copy
        s1 += float(d.sum())
        s2 += float(torch.dot(d, d))
    mean, std = _mean_std(pivot if pivot is not None else 0.0, s1, s2, finite_n)
    if kind == "bool" and lo is not None:
        lo, hi = bool(lo), bool(hi)
    return ValueStats(lo, hi, mean, std, n_nan, n_pos, n_neg, zeros, True, None, total, over)


def _chunked_stats(t: torch.Tensor, over: str, chunks: Iterable[torch.Tensor] | None = None, kind: str | None = None) -> ValueStats:
    """Every statistic from small chunks, accumulated on the device, gathered once.

    ``chunks`` (default: the chunks of ``t``) are 1-D or any-shape pieces of the values; ``kind``
    says how to read them (default: from ``t``'s dtype).  Integer min/max are exact (int64 on the
    device; uint64 through a sign-bit flip), never rounded through float64.
    """
    kind = kind or _kind(t.dtype)
    if chunks is None:
        chunks = iter_chunks(t, _chunk_size(t))
    if t.device.type == "cpu":
        return _cpu_stats(chunks, kind, over)
    return _device_stats(t.device, chunks, kind, over)


def _device_stats(device: torch.device, chunks: Iterable[torch.Tensor], kind: str, over: str) -> ValueStats:
    """Accumulate on ``device`` with no host read until the single gather (accelerators).

    Branch-free: every chunk takes the masked path, since a host read per chunk would be a
    device sync per chunk.  Works on any device (the tests run it on the CPU too).
    """
    f64 = dict(dtype=torch.float64, device=device)
    i64 = dict(dtype=torch.int64, device=device)
    inf = torch.tensor(math.inf, **f64)
    nan = torch.zeros((), **i64)
    posinf = torch.zeros((), **i64)
    neginf = torch.zeros((), **i64)
    zeros = torch.zeros((), **i64)
    finite_n = torch.zeros((), **i64)
    total = 0
    s1 = torch.zeros((), **f64)
    s2 = torch.zeros((), **f64)
    lo = inf.clone()
    hi = -inf
    ilo = torch.tensor(2**63 - 1, **i64)
    ihi = torch.tensor(-(2**63), **i64)
    pivot: torch.Tensor | None = None
    is_int = kind in ("int", "uint64", "bool")
    for chunk in chunks:
        chunk = chunk.reshape(-1)
        if chunk.numel() == 0:
            continue
        total += chunk.numel()
        if is_int:
            if kind == "uint64":
                as_i = chunk.view(torch.int64) ^ _SIGN_BIT  # order-preserving, exact
                ilo = torch.minimum(ilo, as_i.min())
                ihi = torch.maximum(ihi, as_i.max())
                zeros += (as_i == _SIGN_BIT).sum()
            else:
                as_i = chunk.to(torch.int64)
                ilo = torch.minimum(ilo, as_i.min())
                ihi = torch.maximum(ihi, as_i.max())
                zeros += (as_i == 0).sum()
            v = chunk.to(torch.float64)
            finite = None
            fin_v = v
            finite_n += v.numel()
        else:
            v = _as_float64(chunk)
            nan += torch.isnan(v).sum()
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
        if finite is not None:
            lo = torch.minimum(lo, torch.where(finite, v, inf).min())
            hi = torch.maximum(hi, torch.where(finite, v, -inf).max())
    if pivot is None:
        pivot = torch.zeros((), **f64)
    parts = [lo, hi, s1, s2, pivot, nan, posinf, neginf, zeros, finite_n, ilo, ihi]
    got = _gather(parts)
    lo_v, hi_v, s1_v, s2_v, piv, n_nan, n_pos, n_neg, n_zero, n, ilo_v, ihi_v = got
    mean, std = _mean_std(piv, s1_v, s2_v, n)
    mn: float | int | bool | None = None
    mx: float | int | bool | None = None
    if n and is_int:
        mn, mx = int(ilo_v), int(ihi_v)
        if kind == "uint64":
            mn, mx = mn - _SIGN_BIT, mx - _SIGN_BIT
        elif kind == "bool":
            mn, mx = bool(mn), bool(mx)
    elif n:
        mn, mx = _finite_or_none(lo_v), _finite_or_none(hi_v)
    return ValueStats(
        mn, mx, mean, std, n_nan, n_pos, n_neg, n_zero, True, None, total, over
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
        on_cpu = t.device.type == "cpu"
        fast_dtypes = (torch.float32, torch.float64) if on_cpu else (torch.float16, torch.bfloat16, torch.float32, torch.float64)
        if t.dtype in fast_dtypes and n > 0 and t.layout == torch.strided:
            flat = _dense_flat(t)
            if flat is not None:  # whole-tensor reductions copy a non-contiguous input: only flat
                fast = _fast_float_stats(flat) if on_cpu else _device_float_stats(flat)
                if fast is not None:
                    return fast
        return _chunked_stats(t, over)


def _numpy_pieces(a: np.ndarray, max_elems: int, dim: int = 0) -> Iterator[np.ndarray]:
    """:func:`pieces` for NumPy arrays: basic-slicing views that cover ``a`` once, each small."""
    n = a.size
    if n == 0:
        return
    if n <= max_elems or dim >= a.ndim:
        yield a
        return
    size = a.shape[dim]
    per = n // size
    lead = (slice(None),) * dim
    if per > max_elems:
        for i in range(size):
            yield from _numpy_pieces(a[lead + (slice(i, i + 1),)], max_elems, dim + 1)
        return
    step = max(1, max_elems // per)
    for start in range(0, size, step):
        yield a[lead + (slice(start, start + step),)]


def chunks_stats(chunks: Iterable[torch.Tensor], dtype: torch.dtype, device: torch.device | str = "cpu", over: str = "values") -> ValueStats:
    """Exact statistics over pieces of values made one at a time (quantized, nested tensors)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        probe = torch.empty(0, dtype=dtype, device=device)
        if dtype.is_complex:
            over = "|z| of the complex values" if over == "values" else over
        return _chunked_stats(probe, over, (c.detach() for c in chunks), _kind(dtype))


def _numpy_target(dtype: np.dtype) -> np.dtype | None:
    """The dtype a NumPy array must be converted to before torch can view it (None: as is)."""
    target = None
    if not dtype.isnative:
        target = dtype.newbyteorder("=")
    if dtype.kind == "f" and dtype.itemsize > 8:  # longdouble: torch has no twin
        target = np.dtype(np.float64)
    if dtype.kind == "c" and dtype.itemsize > 16:  # clongdouble
        target = np.dtype(np.complex128)
    return target


def numpy_stats(a: np.ndarray, budget: int = DEFAULT_BUDGET) -> ValueStats | None:
    """Statistics of a NumPy array's values, through a zero-copy torch view where possible.

    Returns None for arrays with no numeric meaning (object, strings, datetimes).  Arrays torch
    cannot view (foreign byte order, longdouble, strides that are not whole elements) are
    converted piece by piece, so no copy the size of the array is ever made.
    """
    if a.dtype.kind not in "biufc":
        return None
    view = a
    for axis in range(a.ndim):
        if a.strides[axis] < 0:  # order does not matter to statistics: flip to a view
            view = np.flip(view, axis)
    target = _numpy_target(view.dtype)
    tensor = None
    if target is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tensor = torch.from_numpy(view)
        except (TypeError, ValueError, RuntimeError):
            target = view.dtype  # e.g. strides that are not whole elements: copy piece by piece
    if tensor is not None:
        return tensor_stats(tensor, budget)
    assert target is not None
    if view.size > budget:  # converting would copy the whole array: sample instead
        idx = np.random.default_rng(0).integers(0, view.size, min(SAMPLE_SIZE, budget))
        sample = np.ascontiguousarray(view[np.unravel_index(idx, view.shape)]).astype(target)
        s = tensor_stats(torch.from_numpy(sample), budget)
        s.exact, s.sample_size, s.count = False, int(sample.size), int(a.size)
        return s
    rows = (np.ascontiguousarray(p).astype(target, copy=False) for p in _numpy_pieces(view, CPU_CHUNK))
    torch_dtype = torch.from_numpy(np.empty(0, dtype=target)).dtype
    return chunks_stats((torch.from_numpy(r) for r in rows), torch_dtype)


@dataclass
class Histogram:
    """Counts of values in equal-width bins between ``edges[0]`` and ``edges[-1]``."""

    edges: list[float] | list[int]
    counts: list[int]
    sampled: bool
    integer: bool = False  # one bin per integer value: bin i holds edges[0] + i
    boolean: bool = False  # two bins: False, True


def histogram_sample_size(n: int) -> int:
    """Values a histogram of ``n`` elements is drawn from: at most ``HIST_SAMPLE``, and at
    most 1/64 of the tensor (its temporaries stay near 1% of the tensor's bytes)."""
    return int(min(HIST_SAMPLE, max(HIST_SAMPLE // 16, n // 64)))


def value_histogram(t: torch.Tensor, lo: float | int | bool | None, hi: float | int | bool | None, bins: int = 12) -> Histogram | None:
    """A histogram of the finite values (from a fixed-seed sample above ``HIST_SAMPLE`` elements).

    Booleans get two bins (False, True); integers spanning at most ``bins`` values get one bin
    per value (decided on the exact integers, not their float images).
    """
    if lo is None or hi is None or t.numel() == 0:
        return None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        t = t.detach()
        sampled = t.numel() > HIST_SAMPLE
        values = sample_values(t, histogram_sample_size(t.numel())) if sampled else t.reshape(-1)
        if t.dtype == torch.bool:
            true = int(values.sum())
            return Histogram([0, 1, 2], [int(values.numel()) - true, true], sampled, integer=True, boolean=True)
        if values.dtype in (torch.float32, torch.float64):
            v = values  # histc skips NaN and, outside [lo, hi], inf: no copy, no filtering
        elif values.is_floating_point():
            v = values.to(torch.float32)  # float16/bfloat16/float8: no histc kernel of their own
        else:
            v = _as_float64(values)
        integer = not (t.is_floating_point() or t.is_complex())
        if integer and isinstance(lo, int) and isinstance(hi, int) and hi - lo + 1 <= bins:
            width = hi - lo + 1
            # exact offsets from lo in int64 (float64 would merge neighbours above 2**53)
            if values.dtype == torch.uint64:
                off = (values.view(torch.int64) ^ _SIGN_BIT) - (lo + _SIGN_BIT)
            else:
                off = values.to(torch.int64) - lo
            off = off[(off >= 0) & (off < width)]
            counts = torch.bincount(off, minlength=width)[:width].tolist()
            return Histogram([lo + i for i in range(width + 1)], counts, sampled, integer=True)  # exact ints
        flo, fhi = float(lo), float(hi)
        if fhi <= flo:
            return Histogram([flo, fhi], [int(torch.isfinite(v).sum())], sampled)
        counts = torch.histc(v, bins=bins, min=flo, max=fhi).to(torch.int64).tolist()
        step = (fhi - flo) / bins
        return Histogram([flo + i * step for i in range(bins + 1)], counts, sampled)
