"""A histogram of a tensor's finite values, from a fixed-seed sample of large tensors."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from tensormagic.engine.tensorinfo.statistics.chunks import sample_values
from tensormagic.engine.tensorinfo.statistics.values import SIGN_BIT, ValueStats, as_float64, scale_exponent

#: Elements a histogram is drawn from at most (a sample above it).
HIST_SAMPLE = 2**16
#: Values binned at a time on the CPU.
BIN_CHUNK = 2**13


@dataclass(kw_only=True)
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


def bin_counts(v: torch.Tensor, lo: float, hi: float, bins: int) -> list[int]:
    """Counts of ``v`` in ``bins`` equal bins over ``[lo, hi]``, like ``torch.histc``: values
    outside (NaN and inf included) are left out, ``hi`` falls in the last bin.  On the CPU by
    bincount (histc is single-threaded there, some ten times slower on a histogram sample); on
    an accelerator histc itself: one kernel and one device sync."""
    if v.device.type != "cpu":
        kept = v.reshape(-1).to(v.dtype if v.dtype in (torch.float32, torch.float64) else torch.float32)
        return torch.histc(kept, bins=bins, min=lo, max=hi).to(torch.int64).tolist()
    v = v.reshape(-1)
    counts = torch.zeros(bins, dtype=torch.int64)
    for start in range(0, v.numel(), BIN_CHUNK):  # in pieces: a few hundred KiB at most
        part = v[start : start + BIN_CHUNK].to(torch.float64)
        kept = part[(part >= lo) & (part <= hi)]
        index = (kept - lo).mul_(bins / (hi - lo)).floor_().to(torch.int64).clamp_(0, bins - 1)
        counts += torch.bincount(index, minlength=bins)[:bins]
    return counts.tolist()


def value_histogram(
    t: torch.Tensor,
    lo: float | int | bool | None,
    hi: float | int | bool | None,
    bins: int = 12,
    sample: torch.Tensor | None = None,
    stats: ValueStats | None = None,
) -> Histogram | None:
    """A histogram of the finite values (from a fixed-seed sample above ``HIST_SAMPLE`` elements).

    ``sample``: values already drawn from ``t`` (the C pass draws them while it reads ``t``);
    otherwise :func:`sample_values` draws them.  Booleans get two bins (False, True), counted
    exactly from ``stats`` when they are exact; integers spanning at most ``bins`` values get one
    bin per value (decided on the exact integers, not their float images).
    """
    if lo is None or hi is None or t.numel() == 0:
        return None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        t = t.detach()
        if t.dtype == torch.bool and stats is not None and stats.exact:
            return Histogram(edges=[0, 1, 2], counts=[stats.zeros, stats.count - stats.zeros], sampled=False, integer=True, boolean=True)
        sampled = t.numel() > HIST_SAMPLE
        if sampled:
            values = sample if sample is not None else sample_values(t, histogram_sample_size(t.numel()))
        else:
            values = t.reshape(-1)
        if t.dtype == torch.bool:
            true = int(values.sum())
            return Histogram(edges=[0, 1, 2], counts=[int(values.numel()) - true, true], sampled=sampled, integer=True, boolean=True)
        v = as_float64(values) if values.is_complex() or not values.is_floating_point() else values
        integer = not (t.is_floating_point() or t.is_complex())
        if integer and isinstance(lo, int) and isinstance(hi, int) and hi - lo + 1 <= bins:
            width = hi - lo + 1
            # exact offsets from lo in int64 (float64 would merge neighbours above 2**53)
            if values.dtype == torch.uint64:
                off = (values.view(torch.int64) ^ SIGN_BIT) - (lo + SIGN_BIT)
            else:
                off = values.to(torch.int64) - lo
            off = off[(off >= 0) & (off < width)]
            counts = torch.bincount(off, minlength=width)[:width].tolist()
            return Histogram(edges=[lo + i for i in range(width + 1)], counts=counts, sampled=sampled, integer=True)  # exact ints
        flo, fhi = float(lo), float(hi)
        if fhi <= flo:
            return Histogram(edges=[flo, fhi], counts=[int(torch.isfinite(v).sum())], sampled=sampled)
        exponent = scale_exponent(max(abs(flo), abs(fhi)))
        if exponent:  # huge values: bin them scaled by a power of two (fhi - flo would overflow)
            scale = math.ldexp(1.0, -exponent)
            counts = bin_counts(v.to(torch.float64) * scale, flo * scale, fhi * scale, bins)
            step = (fhi * scale - flo * scale) / bins
            return Histogram(edges=[(flo * scale + i * step) / scale for i in range(bins + 1)], counts=counts, sampled=sampled)
        counts = bin_counts(v, flo, fhi, bins)
        step = (fhi - flo) / bins
        return Histogram(edges=[flo + i * step for i in range(bins + 1)], counts=counts, sampled=sampled)
