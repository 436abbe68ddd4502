"""Where an array's bytes live, and whether two arrays share any of them.

Every dense strided array or tensor is reduced to a :class:`MemoryRegion`: its memory space
(``cpu``, ``cuda:0``...), first-element address, shape, byte strides and item size.  Overlap is
found by sorting regions by address and sweeping (not all pairs), then confirmed exactly with
NumPy's solver on layout-only arrays (built from addresses, never read), with bounded work so a
hard case answers "may share memory" instead of hanging.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

#: Bound on NumPy's exact overlap solver (``max_work``); past it the answer is "may share".
EXACT_OVERLAP_WORK = 100_000

SAME_OBJECT = "same object"
VIEW = "view"
SHARES = "shares memory"
MAY_SHARE = "may share memory"


@dataclass(frozen=True)
class MemoryRegion:
    """The bytes an array touches: ``[lo, hi)`` in ``space``, with its exact layout."""

    space: str
    address: int
    shape: tuple[int, ...]
    byte_strides: tuple[int, ...]
    itemsize: int
    lo: int
    hi: int


def _region(space: str, address: int, shape: Sequence[int], byte_strides: Sequence[int], itemsize: int) -> MemoryRegion | None:
    if address == 0 or itemsize == 0 or math.prod(shape) == 0:
        return None
    low = sum((n - 1) * s for n, s in zip(shape, byte_strides) if s < 0)
    high = sum((n - 1) * s for n, s in zip(shape, byte_strides) if s > 0)
    return MemoryRegion(space, address, tuple(shape), tuple(byte_strides), itemsize, address + low, address + high + itemsize)


def memory_region(obj: Any) -> MemoryRegion | None:
    """The region of a dense strided tensor or array; None when there is no such memory."""
    if isinstance(obj, np.ndarray):
        return _region("cpu", obj.__array_interface__["data"][0], obj.shape, obj.strides, obj.itemsize)
    if isinstance(obj, torch.Tensor):
        try:
            if obj.layout != torch.strided or obj.is_nested or obj.device.type == "meta" or obj.is_quantized:
                return None
            from torch._subclasses.fake_tensor import FakeTensor

            if isinstance(obj, FakeTensor):
                return None
            size = obj.element_size()
            return _region(str(obj.device), obj.data_ptr(), tuple(obj.shape), tuple(s * size for s in obj.stride()), size)
        except Exception:  # noqa: BLE001 - exotic tensor subclasses: no region
            return None
    return None


class _LayoutOnly:
    """Exposes a region through ``__array_interface__`` so NumPy can reason about it (never read)."""

    def __init__(self, region: MemoryRegion) -> None:
        self.__array_interface__ = {
            "version": 3,
            "shape": region.shape,
            "typestr": f"|V{region.itemsize}",
            "data": (region.address, True),
            "strides": region.byte_strides,
        }


def exact_overlap(a: MemoryRegion, b: MemoryRegion, max_work: int = EXACT_OVERLAP_WORK) -> bool | None:
    """True/False if the two regions do/do not share a byte; None if proving it costs too much."""
    if a.space != b.space or a.hi <= b.lo or b.hi <= a.lo:
        return False
    if a == b:
        return True
    try:
        return bool(np.shares_memory(np.asarray(_LayoutOnly(a)), np.asarray(_LayoutOnly(b)), max_work=max_work))  # type: ignore[arg-type]  # any bound works; the stub lists -1 and 0 only
    except np.exceptions.TooHardError:
        return None


def overlapping_pairs(regions: Sequence[MemoryRegion | None]) -> Iterable[tuple[int, int]]:
    """Index pairs whose byte ranges overlap (same space), by sort and sweep."""
    present = {i: r for i, r in enumerate(regions) if r is not None}
    order = sorted(present, key=lambda i: (present[i].space, present[i].lo))
    active: list[tuple[int, int]] = []  # (hi, index), sorted by hi
    space = None
    for i in order:
        r = regions[i]
        assert r is not None
        if r.space != space:
            active, space = [], r.space
        cut = bisect.bisect_right(active, (r.lo, math.inf))
        del active[:cut]
        for _, j in active:
            yield (j, i)
        bisect.insort(active, (r.hi, i))


def root_base(obj: Any) -> Any:
    """The object that owns the memory of a view (itself when it is not a view)."""
    if isinstance(obj, torch.Tensor):
        return obj._base if obj._base is not None else obj
    while isinstance(obj, np.ndarray):
        base = obj.base
        if base is None:
            return obj
        if isinstance(base, np.ndarray):
            obj = base
            continue
        # as_strided keeps its source behind a helper object that only holds it as ``.base``;
        # an array from tensor.numpy() has the tensor as its base.
        inner = getattr(base, "base", None)
        if not isinstance(base, torch.Tensor) and isinstance(inner, (np.ndarray, torch.Tensor)) and hasattr(base, "__array_interface__"):
            obj = inner
            continue
        if isinstance(base, torch.Tensor):
            return root_base(base)
        return obj
    return obj


#: Detail of a relation decided by byte ranges alone, once the time for exact checks is spent.
UNCHECKED = "byte ranges overlap; not checked exactly (time budget for exact checks spent)"


def relation(a: Any, b: Any, ra: MemoryRegion | None, rb: MemoryRegion | None, exact: bool = True) -> tuple[str, str] | None:
    """How ``b`` relates to ``a`` in memory as ``(relation, detail)``; None if unrelated.

    With ``exact=False`` overlapping byte ranges answer "may share memory" without the solver.
    """
    if a is b:
        return SAME_OBJECT, "another name for the same object"
    if ra is None or rb is None:
        return None
    if not exact:
        if ra.space != rb.space or ra.hi <= rb.lo or rb.hi <= ra.lo:
            return None
        if ra != rb:
            return MAY_SHARE, UNCHECKED
    shared = exact_overlap(ra, rb)
    if shared is False:
        return None
    if shared is None:
        return MAY_SHARE, "byte ranges overlap; proving it exactly would take too long"
    same_library = isinstance(a, torch.Tensor) == isinstance(b, torch.Tensor)
    if same_library and root_base(a) is root_base(b):
        return VIEW, "a view of the same data: writes through one show in the other"
    return SHARES, "the same bytes: writes through one show in the other"
