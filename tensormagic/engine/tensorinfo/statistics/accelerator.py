"""Statistics on an accelerator (CUDA, MPS, XPU): results stay on the device until one gather.

A host read is a device sync, so nothing here branches on a value: every chunk takes the same
kernels, results land in preallocated device tensors, and :func:`gather` brings them all to
the host in one transfer.  Both paths run on the CPU too (the tests do).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable

import torch

from tensormagic.engine.tensorinfo.statistics.values import (
    HUGE,
    SIGN_BIT,
    ValueStats,
    as_float64,
    centring_pivot,
    finite_or_none,
    mean_std,
)

#: The accelerator path's scratch (a float64 copy of a chunk and a boolean mask, 9 bytes an
#: element) stays under this share of the tensor's bytes, or under DEVICE_SCRATCH_FLOOR bytes,
#: whichever is larger.
DEVICE_SCRATCH_SHARE = 0.03

DEVICE_SCRATCH_FLOOR = 8 * 2**20


def gather(values: list[torch.Tensor]) -> list[float | int]:
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


def device_float_stats(flat: torch.Tensor, chunk: int | None = None, scale: float = 1.0) -> ValueStats:
    """Floating-point values on an accelerator, over a dense 1-D view: about twenty kernels per
    chunk, every result written into one preallocated table, and one host read at the end.

    Per chunk: the counts of zeros, NaN, +inf and -inf (comparisons written as 1.0/0.0 into the
    float64 scratch and summed: summing a boolean mask would make an int64 copy of it inside the
    reduction), the min and max of the finite values (non-finite ones replaced by +inf, then by
    -inf), and the sum and sum of squares of the finite values centred on :func:`centring_pivot` (the
    others replaced by 0).  Scratch: a float64 copy of a chunk and its boolean mask of non-finite
    values (see ``DEVICE_SCRATCH_SHARE``).  ``chunk`` overrides the chunk size (tests run this
    path on the CPU).  Values so large that their sums overflow (near 1.8e308) take a second
    pass scaled by a power of two (``scale``), and a second sync.
    """
    n = flat.numel()
    device = flat.device
    room = max(n * flat.element_size() * DEVICE_SCRATCH_SHARE, DEVICE_SCRATCH_FLOOR)
    size = int(min(n, chunk or max(room // 9, 1024)))
    count = -(-n // size)
    scratch = torch.empty(size, dtype=torch.float64, device=device)
    mask = torch.empty(size, dtype=torch.bool, device=device)
    pivot = centring_pivot(flat)
    centre = pivot * scale  # exact: scale is a power of two
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
        d.copy_(part)
        if scale != 1.0:
            d.mul_(scale)
        d.sub_(centre).masked_fill_(bad, 0.0)
        torch.sum(d, dim=0, out=row[0])
        torch.dot(d, d, out=row[1])
    total = table[:, :6].sum(0)
    got = gather([table[:, 6].min(), table[:, 7].max(), *total, pivot])  # the one device sync
    lo_v, hi_v, s1, s2, n_zero, n_nan, n_pos, n_neg, piv = got
    n_nan, n_pos, n_neg = int(n_nan), int(n_pos), int(n_neg)
    n_fin = n - n_nan - n_pos - n_neg
    mn, mx = (lo_v, hi_v) if n_fin else (None, None)
    if n_fin and scale == 1.0 and not (math.isfinite(s1) and math.isfinite(s2)):  # huge values
        return device_float_stats(flat, chunk, math.ldexp(1.0, -math.frexp(max(abs(lo_v), abs(hi_v)))[1]))
    mean, std = mean_std(piv, s1, s2, n_fin, scale)
    return ValueStats(min=mn, max=mx, mean=mean, std=std, nan=n_nan, posinf=n_pos, neginf=n_neg, zeros=int(n_zero), exact=True, sample_size=None, count=n, over="values")


def device_stats(device: torch.device, chunks: Iterable[torch.Tensor], kind: str, over: str) -> ValueStats:
    """Accumulate on ``device`` with no host read until the single gather (accelerators).

    Branch-free: every chunk takes the masked path, since a host read per chunk would be a
    device sync per chunk.  Works on any device (the tests run it on the CPU too).
    """
    inf = torch.tensor(math.inf, dtype=torch.float64, device=device)
    nan = torch.zeros((), dtype=torch.int64, device=device)
    posinf = torch.zeros((), dtype=torch.int64, device=device)
    neginf = torch.zeros((), dtype=torch.int64, device=device)
    zeros = torch.zeros((), dtype=torch.int64, device=device)
    finite_n = torch.zeros((), dtype=torch.int64, device=device)
    total = 0
    s1 = torch.zeros((), dtype=torch.float64, device=device)
    s2 = torch.zeros((), dtype=torch.float64, device=device)
    lo = inf.clone()
    hi = -inf
    ilo = torch.tensor(2**63 - 1, dtype=torch.int64, device=device)
    ihi = torch.tensor(-(2**63), dtype=torch.int64, device=device)
    pivot: torch.Tensor | None = None
    exponent = torch.zeros((), dtype=torch.int64, device=device)  # sums of values scaled by 2**-exponent (0 unless huge)
    one = torch.ones((), dtype=torch.float64, device=device)
    is_int = kind in ("int", "uint64", "bool")
    for chunk in chunks:
        chunk = chunk.reshape(-1)
        if chunk.numel() == 0:
            continue
        total += chunk.numel()
        if is_int:
            if kind == "uint64":
                as_i = chunk.view(torch.int64) ^ SIGN_BIT  # order-preserving, exact
                ilo = torch.minimum(ilo, as_i.min())
                ihi = torch.maximum(ihi, as_i.max())
                zeros += (as_i == SIGN_BIT).sum()
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
            v = as_float64(chunk)
            nan += torch.isnan(v).sum()
            posinf += torch.isposinf(v).sum()
            neginf += torch.isneginf(v).sum()
            finite = torch.isfinite(v)
            finite_n += finite.sum()
            fin_v = torch.where(finite, v, 0.0)
            zeros += (v == 0).sum()
        if not is_int:  # branch-free rescaling for huge values (see values.scale_exponent)
            magnitude = fin_v.abs().max()
            grown = torch.where(magnitude >= HUGE, torch.frexp(magnitude).exponent.to(torch.int64), 0)
            grown = torch.maximum(exponent, grown)
            factor = torch.ldexp(one, exponent - grown)
            s1 *= factor
            s2 *= factor * factor
            exponent = grown
        scale = torch.ldexp(one, -exponent)
        fin_v = fin_v * scale
        if pivot is None:
            pivot = (fin_v.sum() / torch.clamp(finite_n, min=1) / scale).to(torch.float64)
        shifted = fin_v - pivot * scale
        if finite is not None:
            shifted = torch.where(finite, shifted, 0.0)
        s1 += shifted.sum()
        s2 += (shifted * shifted).sum()
        if finite is not None:
            lo = torch.minimum(lo, torch.where(finite, v, inf).min())
            hi = torch.maximum(hi, torch.where(finite, v, -inf).max())
    if pivot is None:
        pivot = torch.zeros((), dtype=torch.float64, device=device)
    parts = [lo, hi, s1, s2, pivot, nan, posinf, neginf, zeros, finite_n, ilo, ihi, exponent]
    got = gather(parts)
    lo_v, hi_v, s1_v, s2_v, piv = got[:5]
    n_nan, n_pos, n_neg, n_zero, n, ilo_v, ihi_v, e_v = (int(v) for v in got[5:])  # the counts and integer extremes
    mean, std = mean_std(piv, s1_v, s2_v, n, math.ldexp(1.0, -int(e_v)))
    mn: float | int | bool | None = None
    mx: float | int | bool | None = None
    if n and is_int:
        mn, mx = int(ilo_v), int(ihi_v)
        if kind == "uint64":
            mn, mx = mn - SIGN_BIT, mx - SIGN_BIT
        elif kind == "bool":
            mn, mx = bool(mn), bool(mx)
    elif n:
        mn, mx = finite_or_none(lo_v), finite_or_none(hi_v)
    return ValueStats(
        min=mn, max=mx, mean=mean, std=std, nan=n_nan, posinf=n_pos, neginf=n_neg, zeros=n_zero, exact=True, sample_size=None, count=total, over=over
    )
