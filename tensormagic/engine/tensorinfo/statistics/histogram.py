"""A histogram of a tensor's finite values, from a fixed-seed sample of large tensors."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from tensormagic.engine.tensorinfo.statistics.chunks import sample_values
from tensormagic.engine.tensorinfo.statistics.values import SIGN_BIT, as_float64, scale_exponent

#: Elements a histogram is drawn from at most (a sample above it).
HIST_SAMPLE = 2**16


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
            v = as_float64(values)
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
            return Histogram([lo + i for i in range(width + 1)], counts, sampled, integer=True)  # exact ints
        flo, fhi = float(lo), float(hi)
        if fhi <= flo:
            return Histogram([flo, fhi], [int(torch.isfinite(v).sum())], sampled)
        exponent = scale_exponent(max(abs(flo), abs(fhi)))
        if exponent:  # huge values: bin them scaled by a power of two (fhi - flo would overflow)
            scale = math.ldexp(1.0, -exponent)
            v = v.to(torch.float64) * scale  # a copy of the (at most HIST_SAMPLE) values drawn
            counts = torch.histc(v, bins=bins, min=flo * scale, max=fhi * scale).to(torch.int64).tolist()
            step = (fhi * scale - flo * scale) / bins
            return Histogram([(flo * scale + i * step) / scale for i in range(bins + 1)], counts, sampled)
        counts = torch.histc(v, bins=bins, min=flo, max=fhi).to(torch.int64).tolist()
        step = (fhi - flo) / bins
        return Histogram([flo + i * step for i in range(bins + 1)], counts, sampled)
