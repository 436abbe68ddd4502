"""The optional C helper (``_fused.c``): one multi-threaded pass over a strided CPU buffer.

Every common dtype (float32/64, float16, bfloat16, every integer width, bool) and any strided
layout (views, transposes, steps, broadcasts) is read in place, once: min and max (exact),
the counts of zeros, NaN, +inf and -inf, and float64 sums of the centred finite values.  The
result does not depend on the machine (fixed blocks, fixed lanes, a fixed combine: see the C
file).

``_fused`` is None when the extension is not built (no compiler at install time) or when the
environment variable ``TENSORMAGIC_NO_C_HELPER`` is set (to run everything on the pure path);
every caller then takes the pure torch paths in :mod:`.cpu`, which give the same numbers to
float64 rounding.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch

from tensormagic.engine.tensorinfo.statistics.values import ValueStats, mean_std

try:  # built by setup.py when a C compiler is there; None: the pure torch/NumPy paths
    from tensormagic.engine.tensorinfo.statistics import _fused  # type: ignore[attr-defined]  # the C extension
except ImportError:  # pragma: no cover - depends on the build
    _fused = None
if os.environ.get("TENSORMAGIC_NO_C_HELPER"):
    _fused = None

#: Elements from which the C pass runs on torch's thread count rather than one thread: a new
#: thread costs some 50 us and its own copy of every loaded library's thread-local storage (about
#: half a MiB with torch loaded), which would be 10% of a 1e6-element float32 tensor.
FUSED_THREADS_MIN = 2**23
#: Dimensions the C pass walks at most (after merging); more: the pure path.
MAX_DIMS = 16

#: The kernels of the C pass, by torch dtype and by NumPy dtype.
TORCH_KINDS = {
    torch.float32: "float32", torch.float64: "float64", torch.float16: "float16", torch.bfloat16: "bfloat16",
    torch.int8: "int8", torch.int16: "int16", torch.int32: "int32", torch.int64: "int64",
    torch.uint8: "uint8", torch.uint16: "uint16", torch.uint32: "uint32", torch.uint64: "uint64", torch.bool: "bool",
}  # fmt: skip
NUMPY_KINDS = {np.dtype(k): k for k in ("float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool")}
_FLOAT_KINDS = ("float32", "float64", "float16", "bfloat16")


def available() -> bool:
    """True when the C helper is built (and not switched off)."""
    return _fused is not None


def walk_order(shape: Sequence[int], byte_strides: Sequence[int]) -> tuple[list[int], list[int]] | None:
    """The (shape, byte strides) the C pass walks: size-1 dimensions dropped, the others ordered
    by decreasing stride (statistics do not depend on order, memory locality does) and merged
    where they are contiguous with each other, so that the last one is the longest inner loop.
    None when a stride is negative or too many dimensions remain."""
    dims = [(int(n), int(s)) for n, s in zip(shape, byte_strides) if n != 1]
    if any(s < 0 for _, s in dims):
        return None
    dims.sort(key=lambda d: d[1], reverse=True)
    merged: list[tuple[int, int]] = []
    for n, s in dims:
        if merged and merged[-1][1] == s * n:
            merged[-1] = (merged[-1][0] * n, s)
        else:
            merged.append((n, s))
    merged = merged or [(1, 0)]
    if len(merged) > MAX_DIMS:
        return None
    return [n for n, _ in merged], [s for _, s in merged]


#: Grids the C pass fills in one pass at most.
MAX_GRIDS = 4


@dataclass(frozen=True, slots=True)
class PlaneGrid:
    """Every ``step``-th row and column of the first ``planes`` (``height``, ``width``) planes of a
    tensor's values (its last two dims, planes in row-major order): the subsample a heatmap or
    image view reads, which the C pass copies out while it reads the values for the statistics."""

    planes: int
    height: int
    width: int
    step: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(planes, rows, columns) of the grid."""
        return (self.planes, -(-self.height // self.step[0]), -(-self.width // self.step[1]))


def grid_fits(t: torch.Tensor, grid: PlaneGrid) -> bool:
    """True when the C pass can fill ``grid`` while it reads ``t``: its walk goes through the
    values in their own row-major order (strides decreasing), each row of ``width`` values within
    one run of the walk's inner dimension, and the grid's planes within the values."""
    walk = _readable(t)
    return walk is not None and _fits(t, walk[1][0][-1], grid)


def _fits(t: torch.Tensor, inner: int, grid: PlaneGrid) -> bool:
    """:func:`grid_fits` for a readable ``t`` whose walk's inner dimension has ``inner`` values."""
    if t.dim() < 2 or tuple(int(n) for n in t.shape[-2:]) != (grid.height, grid.width):
        return False
    strides = [int(s) for n, s in zip(t.shape, t.stride()) if n != 1]
    if any(a <= b for a, b in pairwise(strides)):
        return False
    return inner % grid.width == 0 and grid.planes * grid.height * grid.width <= t.numel() and min(grid.step) >= 1


def _run(address: int, kind: str, shape: list[int], strides: list[int], n: int, over: str, sample: tuple[int, int] = (0, 0), grids: Sequence[tuple[int, int, int, int, int, int]] = ()) -> ValueStats:
    threads = torch.get_num_threads() if n >= FUSED_THREADS_MIN else 1
    lo, hi, s1, s2, zeros, nan, pinf, ninf, centre = _fused.stats(address, kind, shape, strides, 1.0, threads, *sample, list(grids))
    finite = n - nan - pinf - ninf
    scale = 1.0
    if finite and kind in _FLOAT_KINDS and not (math.isfinite(s1) and math.isfinite(s2)):
        # Values so large that their squares overflow: again, scaled by a power of two (exact).
        scale = math.ldexp(1.0, -math.frexp(max(abs(lo), abs(hi)))[1])
        lo, hi, s1, s2, zeros, nan, pinf, ninf, centre = _fused.stats(address, kind, shape, strides, scale, threads)
    if kind == "bool":
        ones = n - zeros
        mean = ones / n
        std = math.sqrt(ones * zeros / (n * (n - 1))) if n > 1 else None
        return ValueStats(min=bool(lo), max=bool(hi), mean=mean, std=std, nan=0, posinf=0, neginf=0, zeros=zeros, exact=True, sample_size=None, count=n, over=over)
    mean, std = mean_std(centre / scale, s1, s2, finite, scale)
    if not finite:
        lo = hi = None
    return ValueStats(min=lo, max=hi, mean=mean, std=std, nan=nan, posinf=pinf, neginf=ninf, zeros=zeros, exact=True, sample_size=None, count=n, over=over)


def _readable(t: torch.Tensor) -> tuple[str, tuple[list[int], list[int]]] | None:
    """``(kind, walk order)`` when the C pass can read ``t`` where it lies (built, a dtype with a
    kernel, a non-empty strided CPU tensor inside its storage, no negative-bit or conjugate
    view); None otherwise."""
    kind = TORCH_KINDS.get(t.dtype)
    if _fused is None or kind is None or t.device.type != "cpu" or t.layout != torch.strided or t.is_neg() or t.is_conj():
        return None
    if t.numel() == 0 or not in_storage(t):
        return None
    size = t.element_size()
    order = walk_order(t.shape, [s * size for s in t.stride()])
    return None if order is None else (kind, order)


def tensor_stats(t: torch.Tensor, over: str, sample: torch.Tensor | None = None, grids: Sequence[tuple[PlaneGrid, torch.Tensor]] = ()) -> ValueStats | None:
    """Exact statistics of a strided CPU tensor in one pass of the C helper; None where it does
    not apply (not built, a dtype without a kernel, another device or layout, a negative-bit or
    conjugate view, an empty tensor).  ``sample`` (contiguous, of ``t``'s dtype) receives a
    fixed-seed stratified random sample of ``t``'s values, drawn in the same pass; so does each
    grid's tensor (contiguous, of ``t``'s dtype and the grid's shape) the values of its
    :class:`PlaneGrid`, which must :func:`fit <grid_fits>` ``t``."""
    walk = _readable(t)
    if walk is None:
        return None
    kind, order = walk
    n = t.numel()
    room = (0, 0)
    # the C pass writes raw memory: every buffer is checked here (not with assert, gone under -O)
    if sample is not None and sample.numel():
        if not (sample.dtype == t.dtype and sample.is_contiguous() and sample.device.type == "cpu"):
            raise ValueError("the sample must be a contiguous CPU tensor of the values' dtype")
        room = (sample.data_ptr(), sample.numel())
    specs = []
    for grid, out in grids:
        if not (out.dtype == t.dtype and out.is_contiguous() and out.device.type == "cpu" and tuple(out.shape) == grid.shape and _fits(t, order[0][-1], grid)):
            raise ValueError(f"the grid {grid} does not fit the values, or its buffer is not a contiguous CPU tensor of its shape and their dtype")
        specs.append((out.data_ptr(), grid.planes, grid.height, grid.width, grid.step[0], grid.step[1]))
    return _run(t.data_ptr(), kind, order[0], order[1], n, over, room, specs)


def in_storage(t: torch.Tensor) -> bool:
    """True when every byte the tensor's strides reach lies inside a real storage (the C pass
    reads raw memory: a wrapper subclass without data, a fake tensor, must never get there)."""
    try:
        storage = t.untyped_storage()
        base = storage.data_ptr()
        if base == 0:
            return False
        size = t.element_size()
        start = t.data_ptr() - base
        if t.is_contiguous():  # (the usual case: its elements one after another)
            return start >= 0 and start + t.numel() * size <= storage.nbytes()
        span = sum((n - 1) * s for n, s in zip(t.shape, t.stride())) * size + size
        return start >= 0 and min(t.stride(), default=0) >= 0 and start + span <= storage.nbytes()
    except Exception:  # noqa: BLE001 - no storage to speak of
        return False


def array_stats(a: np.ndarray, over: str = "values", sample: np.ndarray | None = None) -> ValueStats | None:
    """:func:`tensor_stats` for a NumPy array in native byte order (any byte strides, even ones
    that are not whole elements); None where the helper does not apply."""
    kind = NUMPY_KINDS.get(a.dtype) if a.dtype.isnative else None
    if _fused is None or kind is None or a.size == 0 or not _within_owner(a):
        return None
    view = a
    for axis in range(a.ndim):
        if a.strides[axis] < 0:  # order does not matter to statistics: flip to a view
            view = np.flip(view, axis)
    order = walk_order(view.shape, view.strides)
    if order is None:
        return None
    room = (0, 0)
    if sample is not None and sample.size:
        assert sample.dtype == a.dtype and sample.flags.c_contiguous
        room = (sample.__array_interface__["data"][0], int(sample.size))
    return _run(view.__array_interface__["data"][0], kind, order[0], order[1], int(a.size), over, room)


def _within_owner(a: np.ndarray) -> bool:
    """False when ``a``'s strides reach outside the memory of the array that owns it (an
    ``as_strided`` view gone wrong: NumPy would read garbage, the C pass must not read at all)."""
    from tensormagic.engine.tensorinfo.memory import root_base  # here: the package imports this one

    owner = root_base(a)
    if not isinstance(owner, np.ndarray) or owner.base is not None:
        return True  # memory owned by another object (a buffer, a tensor): NumPy vouches for it
    start = owner.__array_interface__["data"][0]
    lo = a.__array_interface__["data"][0] + sum((n - 1) * s for n, s in zip(a.shape, a.strides) if s < 0)
    hi = a.__array_interface__["data"][0] + sum((n - 1) * s for n, s in zip(a.shape, a.strides) if s > 0) + a.itemsize
    return bool(start <= lo and hi <= start + owner.nbytes)


def cpu_moments(t: torch.Tensor, pivot: float = 0.0, threads: int = 1) -> tuple[float, float, float, float, int] | None:
    """``(min, max, sum(t - pivot), sum((t - pivot)**2), zeros)`` of a contiguous float32/float64
    CPU tensor in one pass of the C helper, sums in float64; None where the helper does not apply
    (not built, another dtype, device or layout, a negative-bit view).  NaN/inf propagate into the
    result as they would through the sums: check it with ``math.isfinite``.  (The ``%%autograd``
    engine's gradient and parameter norms.)"""
    if _fused is None or t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64) or t.layout != torch.strided or not t.is_contiguous() or t.is_neg() or not in_storage(t):
        return None
    n = t.numel()
    if n == 0:
        return math.inf, -math.inf, 0.0, 0.0, 0
    lo, hi, s1, s2, zeros, nan, pinf, ninf, centre = _fused.stats(t.data_ptr(), TORCH_KINDS[t.dtype], [n], [t.element_size()], 1.0, max(1, threads))
    finite = n - nan - pinf - ninf
    shift = centre - pivot  # the C pass centres on its own pivot: move the sums to ``pivot``
    s2 = s2 + 2.0 * shift * s1 + finite * shift * shift
    s1 = s1 + finite * shift
    if nan:
        return lo, hi, math.nan, math.nan, zeros
    if pinf or ninf:
        s1 = math.nan if pinf and ninf else (math.inf if pinf else -math.inf)
        return (-math.inf if ninf else lo), (math.inf if pinf else hi), s1, math.inf, zeros
    return lo, hi, s1, s2, zeros


def histogram(t: torch.Tensor, edges: Sequence[float]) -> list[int] | None:
    """Counts of a strided CPU tensor's values in the equal bins between ``edges`` (numpy's
    rule: the last bin closed, each value in the bin whose float64 edges hold it), in one
    multi-threaded pass of the C helper; None where it does not apply."""
    walk = _readable(t)
    if walk is None or not hasattr(_fused, "histogram") or walk[0] == "bool":
        return None
    kind, order = walk
    n = t.numel()
    threads = torch.get_num_threads() if n >= FUSED_THREADS_MIN else 1
    return list(_fused.histogram(t.data_ptr(), kind, order[0], order[1], [float(e) for e in edges], threads))
