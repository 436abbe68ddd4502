"""The report of one NumPy array or NumPy scalar."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from tensormagic.engine.naming import type_name
from tensormagic.engine.tensorinfo import memory
from tensormagic.engine.tensorinfo.aliases import find_aliases
from tensormagic.engine.tensorinfo.conversions import array_conversions
from tensormagic.engine.tensorinfo.dtypes import dtype_table, numpy_dtype_name, torch_twin_of_numpy
from tensormagic.engine.tensorinfo.guard import guarded, safe_stats
from tensormagic.engine.tensorinfo.reports import Conversion, TensorInfo
from tensormagic.engine.tensorinfo.statistics import DEFAULT_BUDGET, numpy_stats, value_histogram

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
        with memoryview(owner) as view:
            return int(view.nbytes)
    except TypeError:
        pass
    if hasattr(owner, "__array_interface__") or hasattr(owner, "__array__"):
        return guarded(None, lambda: int(np.asarray(owner).nbytes))
    return None


def inspect_array(name: str, a: np.ndarray | np.generic, namespace: Mapping[str, Any] | None = None, budget: int = DEFAULT_BUDGET, hidden: frozenset[str] | set[str] = frozenset()) -> TensorInfo:
    """Build the report of a NumPy array or NumPy scalar."""
    kind_name = type_name(a)
    scalar = isinstance(a, np.generic)
    arr = np.asarray(a)
    twin = torch_twin_of_numpy(arr.dtype)
    stats, stats_note = safe_stats(lambda: numpy_stats(arr, budget))
    histogram = None
    if stats is not None and arr.dtype.kind in "biuf" and arr.dtype.isnative and arr.dtype.itemsize <= 8:
        flipped = arr[tuple(slice(None, None, -1) if s < 0 else slice(None) for s in arr.strides)]
        histogram, _ = safe_stats(lambda: value_histogram(torch.from_numpy(flipped), stats.min, stats.max))
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
    aliases = find_aliases(name, a, namespace, hidden) if namespace is not None and not scalar else []
    conversion = array_conversions(arr) if not scalar else [
        Conversion("torch.from_numpy(a)", "fails", "expects an np.ndarray; a NumPy scalar is not one"),
        Conversion("torch.tensor(a)", "copies", "makes a 0-d tensor"),
        Conversion("torch.as_tensor(a)", "copies", "makes a 0-d tensor"),
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
        details={"writeable": bool(arr.flags.writeable), "byte_order": arr.dtype.byteorder},
        notes=notes,
    )
