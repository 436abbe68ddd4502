"""The report of one NumPy array or NumPy scalar."""

from __future__ import annotations

import math
import mmap
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from tensormagic.engine.naming import has_attribute, is_masked_array, type_name
from tensormagic.engine.tensorinfo import memory
from tensormagic.engine.tensorinfo.aliases import find_aliases
from tensormagic.engine.tensorinfo.conversions import array_conversions
from tensormagic.engine.tensorinfo.dtypes import dtype_table, numpy_dtype_name, torch_twin_of_numpy
from tensormagic.engine.tensorinfo.guard import guarded, safe_stats
from tensormagic.engine.tensorinfo.reports import Conversion, TensorInfo
from tensormagic.engine.tensorinfo.statistics import (
    DEFAULT_BUDGET,
    masked_histogram_values,
    masked_stats,
    numpy_stats_and_sample,
    value_histogram,
)
from tensormagic.engine.tensorinfo.statistics.masked import masked_count


def _numpy_memory_format(a: np.ndarray) -> str:
    if a.flags.c_contiguous:
        return "C"
    if a.flags.f_contiguous:
        return "Fortran"
    return "strided"


def numpy_storage_nbytes(a: np.ndarray) -> int | None:
    """Bytes of the memory block ``a`` lives in (its owner's size), None if unknown."""
    root = memory.root_base(a)
    if isinstance(root, torch.Tensor):  # an array made by tensor.numpy()
        return guarded(None, lambda: int(root.untyped_storage().nbytes()))
    if not isinstance(root, np.ndarray):
        return None
    owner = root.base
    if owner is None:
        return int(root.nbytes)
    try:
        with memoryview(owner) as view:  # type: ignore[arg-type]  # any buffer owner, not only ndarrays
            return int(view.nbytes)
    except TypeError:
        pass
    # An object exposing its memory through __array_interface__: its size from the interface
    # (never np.asarray(owner), which could call an __array__ that is slow or raises).
    return guarded(None, lambda: _interface_nbytes(owner))


def _interface_nbytes(owner: Any) -> int | None:
    iface = owner.__array_interface__ if has_attribute(owner, "__array_interface__") else None
    if not isinstance(iface, dict):
        return None
    return int(np.dtype(iface["typestr"]).itemsize * math.prod(iface["shape"]))


def file_backing(a: np.ndarray) -> dict[str, Any] | None:
    """``{"file": path, "mode": mode}`` when ``a``'s memory is a memory-mapped file (an
    ``np.memmap`` or a view of one); None for ordinary memory."""
    obj: Any = a
    for _ in range(64):  # a chain of views; bounded
        if isinstance(obj, np.memmap) and getattr(obj, "filename", None):
            return {"file": str(obj.filename), "mode": str(getattr(obj, "mode", "?"))}
        if isinstance(obj, mmap.mmap):
            return {"file": None, "mode": "?"}
        base = getattr(obj, "base", None) if isinstance(obj, np.ndarray) else None
        if base is None:
            return None
        obj = base
    return None


def _kind_notes(a: np.ndarray | np.generic, details: dict[str, Any]) -> list[str]:
    """What an ndarray subclass changes: a masked array's mask, a matrix's algebra, a file."""
    notes: list[str] = []
    if is_masked_array(a):
        masked = masked_count(a)
        details["masked"] = {"masked": masked, "unmasked": int(a.size) - masked, "fill_value": str(a.fill_value)}
        notes.append(f"a masked array: {masked:,} of {a.size:,} values are masked; statistics and the histogram are over the unmasked values (the masked ones hold a filler, not data)")
    if isinstance(a, np.matrix):
        notes.append("a numpy.matrix: always 2-D, and * is matrix multiplication (NumPy recommends plain arrays, where @ multiplies matrices)")
    if isinstance(a, np.ndarray):
        backing = file_backing(a)
        if backing is not None:
            details["file"] = backing
            where = f"{backing['file']!r}" if backing["file"] else "a memory-mapped file"
            notes.append(f"file-backed (np.memmap of {where}, mode {backing['mode']!r}): values are read from the file's pages, never copied whole; writes go to the file")
    return notes


def inspect_array(name: str, a: np.ndarray | np.generic, namespace: Mapping[str, Any] | None = None, budget: int = DEFAULT_BUDGET, hidden: frozenset[str] | set[str] = frozenset()) -> TensorInfo:
    """Build the report of a NumPy array or NumPy scalar."""
    kind_name = type_name(a)
    scalar = isinstance(a, np.generic)
    masked_a = a if is_masked_array(a) else None
    masked = masked_a is not None
    arr = np.ma.getdata(a) if masked else np.asarray(a)  # the plain ndarray over the same memory
    twin = torch_twin_of_numpy(arr.dtype)
    details: dict[str, Any] = {"writeable": bool(arr.flags.writeable), "byte_order": arr.dtype.byteorder}
    kind_notes = _kind_notes(a, details)
    got, stats_note = safe_stats(lambda: (masked_stats(masked_a, budget), None) if masked_a is not None else numpy_stats_and_sample(arr, budget))
    stats, sample = got if got is not None else (None, None)
    histogram = None
    if stats is not None and arr.dtype.kind in "biuf" and arr.dtype.itemsize <= 8:
        if masked_a is not None:
            values, sampled = masked_histogram_values(masked_a)
            histogram, _ = safe_stats(lambda: value_histogram(values, stats.min, stats.max))
            if histogram is not None:
                histogram.sampled = histogram.sampled or sampled
        elif arr.dtype.isnative:
            flipped = arr[tuple(slice(None, None, -1) if s < 0 else slice(None) for s in arr.strides)]
            histogram, _ = safe_stats(lambda: value_histogram(torch.from_numpy(flipped), stats.min, stats.max, sample=sample, stats=stats))
    if stats is None and stats_note is None:
        stats_note = f"no statistics for dtype {arr.dtype} (not numeric)"
    itemsize = arr.itemsize
    strides = [s // itemsize if itemsize else 0 for s in arr.strides]
    storage = arr.itemsize if scalar else numpy_storage_nbytes(arr)
    notes: list[str] = []
    if storage is not None and arr.nbytes > storage:
        notes.append(f"{arr.nbytes:,} logical bytes over only {storage:,} bytes of memory: elements repeat (a stride of 0, e.g. from np.broadcast_to)")
    elif storage is not None and storage > arr.nbytes and not scalar:
        notes.append(f"a view: its base holds {storage:,} bytes, this array uses {arr.nbytes:,} of them")
    if any(s % itemsize for s in arr.strides if itemsize):
        notes.append("strides are not whole elements; byte_strides are exact")
    notes = kind_notes + notes
    aliases = find_aliases(name, a, namespace, hidden) if namespace is not None and not scalar else []
    conversion = array_conversions(arr, masked) if not scalar else [
        Conversion(call="torch.from_numpy(a)", result="fails", detail="expects an np.ndarray; a NumPy scalar is not one"),
        Conversion(call="torch.tensor(a)", result="copies", detail="makes a 0-d tensor"),
        Conversion(call="torch.as_tensor(a)", result="copies", detail="makes a 0-d tensor"),
    ]
    return TensorInfo(
        name=name,
        type=kind_name,
        dtype=numpy_dtype_name(arr.dtype),
        equivalent_dtype=twin.twin,
        equivalent_note=twin.note,
        shape=list(arr.shape),
        ndim=arr.ndim,
        numel=int(arr.size),
        itemsize=itemsize,
        strides=strides,
        byte_strides=list(arr.strides),
        contiguous=bool(arr.flags.c_contiguous),
        memory_format=_numpy_memory_format(arr),
        storage_offset=None,
        nbytes=int(arr.nbytes),
        storage_nbytes=storage,
        device="cpu",
        layout="strided",
        requires_grad=None,
        is_leaf=None,
        grad_fn=None,
        grad=None,
        version=None,
        stats=stats,
        stats_note=stats_note,
        aliases=aliases,
        conversion=conversion,
        dtype_table=dtype_table(),
        histogram=histogram,
        details=details,
        notes=notes,
    )
