"""Statistics of a NumPy masked array: over the unmasked values only, the masked ones counted.

``np.ma`` keeps masked values in the data (often a filler such as 1e20); a statistic that read
them would report the filler as data.  The data and the mask are read piece by piece, so no
copy the size of the array is made.
"""

from __future__ import annotations

import numpy as np
import torch

from tensormagic.engine.tensorinfo.statistics.chunks import numpy_pieces
from tensormagic.engine.tensorinfo.statistics.compute import (
    chunks_stats,
    numpy_stats,
    numpy_target,
    tensor_stats,
)
from tensormagic.engine.tensorinfo.statistics.histogram import HIST_SAMPLE
from tensormagic.engine.tensorinfo.statistics.values import CPU_CHUNK, DEFAULT_BUDGET, SAMPLE_SIZE, ValueStats

#: Unmasked values up to which a masked array's histogram is drawn from all of them.
HIST_ALL_MAX = 4 * HIST_SAMPLE


def _full_mask(a: np.ma.MaskedArray) -> np.ndarray | None:
    """The mask as a boolean array of the data's shape; None when nothing is masked."""
    mask = np.ma.getmask(a)
    if mask is np.ma.nomask:
        return None
    return np.broadcast_to(mask, np.ma.getdata(a).shape)


def masked_count(a: np.ma.MaskedArray) -> int:
    """How many values of ``a`` are masked."""
    mask = _full_mask(a)
    return 0 if mask is None else int(np.count_nonzero(mask))


def unmasked_sample(a: np.ma.MaskedArray, k: int, seed: int = 0) -> np.ndarray:
    """The unmasked values among ``k`` fixed-seed draws (with replacement) from ``a``, 1-D."""
    data = np.ma.getdata(a)
    mask = _full_mask(a)
    if data.size == 0:
        return data.reshape(-1)[:0]
    index = np.unravel_index(np.random.default_rng(seed).integers(0, data.size, k), data.shape)
    values = data[index]
    return values if mask is None else values[~mask[index]]


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype=dtype)).dtype


def _over(kind: str, kept: int, masked: int) -> str:
    what = {"c": f"|z| of the {kept:,} unmasked complex values", "b": f"the {kept:,} unmasked values (True = 1)"}.get(kind, f"the {kept:,} unmasked values")
    return f"{what}; {masked:,} masked value{'s' if masked != 1 else ''} left out"


def masked_stats(a: np.ma.MaskedArray, budget: int = DEFAULT_BUDGET) -> ValueStats | None:
    """Statistics of the unmasked values of ``a`` (exact up to ``budget`` elements), with the
    masked count in ``masked``; None for dtypes with no numeric meaning."""
    data = np.ma.getdata(a)
    if data.dtype.kind not in "biufc":
        return None
    mask = _full_mask(a)
    if mask is None or not mask.any():
        stats = numpy_stats(data, budget)
        if stats is not None:
            stats.masked = 0
        return stats
    masked = int(np.count_nonzero(mask))
    kept = data.size - masked
    target = numpy_target(data.dtype) or data.dtype
    dtype = _torch_dtype(target)
    if data.size > budget:
        sample = np.ascontiguousarray(unmasked_sample(a, min(SAMPLE_SIZE, budget))).astype(target, copy=False)
        stats = tensor_stats(torch.from_numpy(sample), budget)
        stats.exact, stats.sample_size = False, int(sample.size)
    else:
        parts = (np.ascontiguousarray(d[~m]).astype(target, copy=False) for d, m in zip(numpy_pieces(data, CPU_CHUNK), numpy_pieces(mask, CPU_CHUNK)))
        stats = chunks_stats((torch.from_numpy(p) for p in parts), dtype)
    stats.count = kept
    stats.masked = masked
    stats.over = _over(data.dtype.kind, kept, masked)
    return stats


def masked_histogram_values(a: np.ma.MaskedArray) -> tuple[torch.Tensor, bool]:
    """The unmasked values a histogram is drawn from (all of them up to ``HIST_ALL_MAX``, else a
    fixed-seed sample) and whether they are a sample."""
    data = np.ma.getdata(a)
    mask = _full_mask(a)
    kept = data.size - (0 if mask is None else int(np.count_nonzero(mask)))
    if kept <= HIST_ALL_MAX:
        values = data.reshape(-1) if mask is None else data[~mask]
        sampled = False
    else:
        values = unmasked_sample(a, HIST_SAMPLE)
        sampled = True
    target = numpy_target(values.dtype)
    values = np.ascontiguousarray(values if target is None else values.astype(target))
    return torch.from_numpy(values), sampled
