"""Which statistics path a tensor, array or stream of pieces takes (exact, or from a sample).

:func:`tensor_stats` for dense strided tensors, :func:`numpy_stats` for NumPy arrays (through
a zero-copy torch view where possible), :func:`chunks_stats` for pieces made one at a time
(quantized and nested tensors).  Above the budget a fixed-seed sample is used and the result
says so.  The user's random number generators are never touched.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np
import torch

from tensormagic.engine.tensorinfo.statistics import fused
from tensormagic.engine.tensorinfo.statistics.accelerator import device_float_stats, device_stats
from tensormagic.engine.tensorinfo.statistics.chunks import (
    chunk_size,
    dense_flat,
    iter_chunks,
    numpy_pieces,
    sample_values,
)
from tensormagic.engine.tensorinfo.statistics.cpu import cpu_stats, pure_float_stats
from tensormagic.engine.tensorinfo.statistics.exact_mean import exact_array_mean, exact_integer_mean
from tensormagic.engine.tensorinfo.statistics.histogram import HIST_SAMPLE, histogram_sample_size
from tensormagic.engine.tensorinfo.statistics.values import (
    CPU_CHUNK,
    DEFAULT_BUDGET,
    SAMPLE_SIZE,
    ValueStats,
    value_kind,
)


def chunked_stats(t: torch.Tensor, over: str, chunks: Iterable[torch.Tensor] | None = None, kind: str | None = None) -> ValueStats:
    """Every statistic from small chunks: on the CPU accumulated in Python (:func:`~.cpu.cpu_stats`),
    elsewhere on the device and gathered once (:func:`~.accelerator.device_stats`).

    ``chunks`` (default: the chunks of ``t``) are 1-D or any-shape pieces of the values; ``kind``
    says how to read them (default: from ``t``'s dtype).  Integer min/max are exact (int64 on the
    device; uint64 through a sign-bit flip), never rounded through float64.
    """
    kind = kind or value_kind(t.dtype)
    if chunks is None:
        chunks = iter_chunks(t, chunk_size(t))
    if t.device.type == "cpu":
        return cpu_stats(chunks, kind, over)
    return device_stats(t.device, chunks, kind, over)


def stats_and_sample(t: torch.Tensor, budget: int = DEFAULT_BUDGET) -> tuple[ValueStats, torch.Tensor | None]:
    """:func:`tensor_stats`, and the histogram sample the C pass drew while it read ``t`` (None
    where it did not: a small tensor, a sampled one, another path)."""
    stats, sample, _ = stats_sample_grids(t, budget)
    return stats, sample


def stats_sample_grids(t: torch.Tensor, budget: int = DEFAULT_BUDGET, grids: Iterable[fused.PlaneGrid] = ()) -> tuple[ValueStats, torch.Tensor | None, dict[fused.PlaneGrid, torch.Tensor]]:
    """:func:`stats_and_sample`, and the :class:`~.fused.PlaneGrid` s among ``grids`` that the C
    pass filled while it read ``t`` (the pictures' subsamples, copied with no second trip to
    memory; a grid it could not fill is not in the dict, and the picture reads it itself)."""
    n = t.numel()
    if fused.available() and HIST_SAMPLE < n <= budget and t.device.type == "cpu" and t.dtype in fused.TORCH_KINDS:
        sample = torch.empty(histogram_sample_size(n), dtype=t.dtype)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            t = t.detach()
            fitting = [g for g in dict.fromkeys(grids) if fused.grid_fits(t, g)][: fused.MAX_GRIDS]
            filled = {g: torch.empty(g.shape, dtype=t.dtype) for g in fitting}
            stats = fused.tensor_stats(t, "values (True = 1)" if t.dtype == torch.bool else "values", sample, list(filled.items()))
        if stats is not None:
            return exact_integer_mean(t, stats), sample, filled
    return tensor_stats(t, budget), None, {}


def numpy_stats_and_sample(a: np.ndarray, budget: int = DEFAULT_BUDGET) -> tuple[ValueStats | None, torch.Tensor | None]:
    """:func:`numpy_stats`, and the histogram sample the C pass drew (as a tensor), as above."""
    if fused.available() and HIST_SAMPLE < a.size <= budget and a.dtype in fused.NUMPY_KINDS and a.dtype.isnative:
        sample = np.empty(histogram_sample_size(a.size), dtype=a.dtype)
        stats = fused.array_stats(a, "values (True = 1)" if a.dtype.kind == "b" else "values", sample)
        if stats is not None:
            return exact_array_mean(a, stats), torch.from_numpy(sample)
    return numpy_stats(a, budget), None


def tensor_stats(t: torch.Tensor, budget: int = DEFAULT_BUDGET, over: str = "values") -> ValueStats:
    """Statistics of a dense strided tensor's values (|z| for complex), exact up to ``budget``
    (the mean of huge integers too: :mod:`.exact_mean`)."""
    return exact_integer_mean(t, _tensor_stats(t, budget, over))


def _tensor_stats(t: torch.Tensor, budget: int, over: str) -> ValueStats:
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
            s = fused.tensor_stats(sample, over) or chunked_stats(sample, over)
            s.exact = False
            s.sample_size = sample.numel()
            s.count = n
            return s
        on_cpu = t.device.type == "cpu"
        if on_cpu:
            fast = fused.tensor_stats(t, over)  # any common dtype and layout, one pass
            if fast is not None:
                return fast
        fast_dtypes = (torch.float32, torch.float64) if on_cpu else (torch.float16, torch.bfloat16, torch.float32, torch.float64)
        if t.dtype in fast_dtypes and n > 0 and t.layout == torch.strided:
            flat = dense_flat(t)
            if flat is not None:  # whole-tensor reductions copy a non-contiguous input: only flat
                fast = pure_float_stats(flat) if on_cpu else device_float_stats(flat)
                if fast is not None:
                    return fast
        return chunked_stats(t, over)


def chunks_stats(chunks: Iterable[torch.Tensor], dtype: torch.dtype, device: torch.device | str = "cpu", over: str = "values") -> ValueStats:
    """Exact statistics over pieces of values made one at a time (quantized, nested tensors)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        probe = torch.empty(0, dtype=dtype, device=device)
        if dtype.is_complex:
            over = "|z| of the complex values" if over == "values" else over
        return chunked_stats(probe, over, (c.detach() for c in chunks), value_kind(dtype))


def numpy_target(dtype: np.dtype) -> np.dtype | None:
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
    """Statistics of a NumPy array's values: in place through the C pass, else through a
    zero-copy torch view where possible.

    Returns None for arrays with no numeric meaning (object, strings, datetimes).  Arrays torch
    cannot view (foreign byte order, longdouble, strides that are not whole elements) are
    converted piece by piece, so no copy the size of the array is ever made.
    """
    if a.dtype.kind not in "biufc":
        return None
    if a.size <= budget:  # the C pass reads any byte strides in place
        fast = fused.array_stats(a, "values (True = 1)" if a.dtype.kind == "b" else "values")
        if fast is not None:
            return exact_array_mean(a, fast)
    view = a
    for axis in range(a.ndim):
        if a.strides[axis] < 0:  # order does not matter to statistics: flip to a view
            view = np.flip(view, axis)
    target = numpy_target(view.dtype)
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
    rows = (np.ascontiguousarray(p).astype(target, copy=False) for p in numpy_pieces(view, CPU_CHUNK))
    torch_dtype = torch.from_numpy(np.empty(0, dtype=target)).dtype
    return chunks_stats((torch.from_numpy(r) for r in rows), torch_dtype)
