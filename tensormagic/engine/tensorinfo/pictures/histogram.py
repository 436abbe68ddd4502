"""The histogram chart's data: true counts over every element, binned where the tensor lives.

Up to the statistics' budget every element is counted (above it, a fixed-seed sample, labelled
as such), in chunks on the tensor's device: on the CPU by the C pass when it is built (one
multi-threaded read, see ``_fused.c``), else in torch; on an accelerator in torch, one small
gather at the end.  Bins follow ``numpy.histogram``: equal widths over [min, max], the last bin
closed, each value in the bin whose edges hold it exactly (an index from the float64 quotient,
then corrected against the edges).  Integers with few distinct values and booleans get one bar
per value.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from tensormagic.engine.tensorinfo.pictures.reports import HistogramView
from tensormagic.engine.tensorinfo.statistics import (
    DEFAULT_BUDGET,
    SAMPLE_SIZE,
    ValueStats,
    fused,
    iter_chunks,
    sample_values,
)
from tensormagic.engine.tensorinfo.statistics.chunks import chunk_size

#: Integer data spanning at most this many values gets one bar per value.
MAX_VALUES = 32
#: Equal-width bins at most (fewer for few elements).
MAX_BINS = 40
#: On the CPU, with the default budget, every element is counted up to this many; above it the
#: chart bins the fixed-seed sample the statistics' pass drew (binning all of 1e8 values would
#: take 8x the statistics' own time).  --exact or --budget N counts every element up to N.
HIST_ALL_MAX = 1 << 22
#: Counts spanning this ratio (largest / smallest non-zero) are drawn on a log scale.
LOG_RATIO = 1000


def bin_count(n: int) -> int:
    """Bins for ``n`` values: about sqrt(n), between 8 and MAX_BINS."""
    return int(min(MAX_BINS, max(8, round(math.sqrt(max(n, 1))))))


def _float_counts(values: torch.Tensor, edges: np.ndarray) -> list[int]:
    """Counts of ``values`` in the bins ``edges`` (numpy.histogram's rule), chunk by chunk on
    their device; values outside [edges[0], edges[-1]] (NaN, inf) are left out."""
    bins = len(edges) - 1
    lo, hi = float(edges[0]), float(edges[-1])
    fast = fused.histogram(values, [float(e) for e in edges]) if values.device.type == "cpu" else None
    if fast is not None:
        return fast
    device = values.device
    edge_t = torch.tensor(edges, dtype=torch.float64, device=device)
    half_span = hi * 0.5 - lo * 0.5
    # bin `bins` collects what is left out (no boolean mask: no device sync until the one copy
    # of the counts at the end)
    counts = torch.zeros(bins + 1, dtype=torch.int64, device=device)
    for chunk in iter_chunks(values, chunk_size(values)):
        x = chunk.to(torch.float64)
        inside = (x >= lo) & (x <= hi)
        x = torch.where(inside, x, lo)
        index = (x * 0.5 - lo * 0.5).mul_(bins / half_span).floor_().clamp_(0, bins - 1).to(torch.int64)
        index -= (x < edge_t[index]).to(torch.int64)
        index += ((x >= edge_t[index + 1]) & (index != bins - 1)).to(torch.int64)
        _count(counts, torch.where(inside, index, bins))
    return [int(c) for c in counts[:bins].cpu().tolist()]


def _count(counts: torch.Tensor, index: torch.Tensor) -> None:
    """``counts[i] += 1`` for each i of ``index`` (all < len(counts)): bincount on the CPU (the
    fastest there), index_add_ of an expanded 1 elsewhere (bincount would sync the device)."""
    if index.device.type == "cpu":
        counts += torch.bincount(index, minlength=counts.numel())
    else:
        counts.index_add_(0, index, torch.ones(1, dtype=torch.int64, device=index.device).expand(index.numel()))


def _integer_counts(values: torch.Tensor, lo: int, width: int) -> list[int]:
    """Counts of each of the ``width`` integers from ``lo`` (exact int64 offsets), on the device."""
    counts = torch.zeros(width + 1, dtype=torch.int64, device=values.device)
    for chunk in iter_chunks(values, chunk_size(values)):
        off = chunk.to(torch.int64) - lo
        _count(counts, torch.where((off >= 0) & (off < width), off, width))  # bin `width`: left out
    return [int(c) for c in counts[:width].cpu().tolist()]


def _markers(stats: ValueStats) -> dict[str, float]:
    out: dict[str, float] = {}
    if stats.min is not None and stats.max is not None:
        out["min"], out["max"] = float(stats.min), float(stats.max)
    if stats.mean is not None:
        out["mean"] = float(stats.mean)
        if stats.std is not None and math.isfinite(stats.std):
            out["mean - std"], out["mean + std"] = stats.mean - stats.std, stats.mean + stats.std
    return out


def _log_scale(counts: list[int]) -> bool:
    positive = [c for c in counts if c > 0]
    return len(positive) > 1 and max(positive) >= LOG_RATIO * min(positive)


def histogram_view(t: torch.Tensor, stats: ValueStats, budget: int, sample: torch.Tensor | None = None) -> HistogramView | None:
    """The histogram of ``t``'s finite values (|z| of complex ones), None when there is none to
    draw (no finite values, one element).  ``stats``: the report's statistics of ``t``;
    ``sample``: the values the statistics' pass drew on its way (binned instead of every element
    above :data:`HIST_ALL_MAX` on the CPU)."""
    n = t.numel()
    if n <= 1 or stats.min is None or stats.max is None:
        return None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        t = t.detach()
        exact = n <= budget
        reason = "" if exact else f"the tensor is above the statistics' budget ({budget:,} elements)"
        if exact and n > HIST_ALL_MAX and t.device.type == "cpu" and budget == DEFAULT_BUDGET and t.dtype != torch.bool:  # bool: counts from the statistics
            exact = False
            reason = f"counting all {n:,} values would take longer than the statistics themselves (--exact counts every one)"
        values = t if exact else (sample if sample is not None and sample.numel() else sample_values(t, min(SAMPLE_SIZE, budget)))
        if t.is_complex():
            values = values.abs()
        left_out = {"NaN": int(stats.nan), "+inf": int(stats.posinf), "-inf": int(stats.neginf)} if exact else {}
        markers = _markers(stats)
        if t.dtype == torch.bool:
            if exact and stats.exact:
                counts = [int(stats.zeros), int(stats.count - stats.zeros)]
            else:
                true = int(values.sum())
                counts = [int(values.numel()) - true, true]
            return HistogramView(edges=[0.0, 1.0, 2.0], counts=counts, integer=True, boolean=True, exact=exact, counted=sum(counts), left_out={}, markers=markers, log=_log_scale(counts), sample_reason=reason)
        integer = not (t.is_floating_point() or t.is_complex())
        lo, hi = stats.min, stats.max
        if integer and isinstance(lo, int) and isinstance(hi, int) and hi - lo + 1 <= MAX_VALUES:
            width = hi - lo + 1
            counts = _integer_counts(values, lo, width)
            return HistogramView(edges=[float(lo + i) for i in range(width + 1)], counts=counts, integer=True, boolean=False, exact=exact, counted=sum(counts), left_out={}, markers=markers, log=_log_scale(counts), sample_reason=reason)
        flo, fhi = float(lo), float(hi)
        if fhi <= flo:  # one value (as numpy: one bin of width 1 around it would misstate it)
            finite = int(stats.count - stats.nan - stats.posinf - stats.neginf) if exact and stats.exact else int(torch.isfinite(values.to(torch.float64)).sum())
            return HistogramView(edges=[flo, fhi], counts=[finite], integer=False, boolean=False, exact=exact, counted=finite, left_out=left_out, markers=markers, log=False, sample_reason=reason)
        bins = bin_count(n)
        edges = np.linspace(flo, fhi, bins + 1)
        if not np.all(np.isfinite(edges)):
            edges = np.linspace(flo * 0.5, fhi * 0.5, bins + 1) * 2.0  # spans beyond float64's range
        counts = _float_counts(values, edges)
        return HistogramView(edges=[float(e) for e in edges], counts=counts, integer=False, boolean=False, exact=exact, counted=sum(counts), left_out=left_out, markers=markers, log=_log_scale(counts), sample_reason=reason)


__all__ = ["LOG_RATIO", "MAX_BINS", "MAX_VALUES", "bin_count", "histogram_view"]
