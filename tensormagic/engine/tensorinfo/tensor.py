"""The report of one torch tensor: any layout (strided, sparse, quantized, nested), dtype or device."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from tensormagic.engine.naming import UNINITIALIZED, is_uninitialized, type_name
from tensormagic.engine.sharding.detect import is_dtensor
from tensormagic.engine.tensorinfo.aliases import find_aliases
from tensormagic.engine.tensorinfo.conversions import tensor_conversions
from tensormagic.engine.tensorinfo.dtypes import (
    DtypeTwin,
    dtype_table,
    numpy_twin_of_torch,
)
from tensormagic.engine.tensorinfo.guard import guarded, safe_stats
from tensormagic.engine.tensorinfo.pictures import (
    PictureError,
    PictureOptions,
    Pictures,
    safe_pictures,
    tensor_grids,
)
from tensormagic.engine.tensorinfo.reports import TensorInfo
from tensormagic.engine.tensorinfo.statistics import (
    CPU_CHUNK,
    DEFAULT_BUDGET,
    Histogram,
    ValueStats,
    chunks_stats,
    iter_chunks,
    pieces,
    stats_sample_grids,
    tensor_stats,
    value_histogram,
)

#: Stored values of an uncoalesced COO tensor up to which it is coalesced (a copy) for statistics.
MAX_COALESCE = 2**22

_SPARSE_LAYOUTS = (torch.sparse_coo, torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc)

#: Quantized dtypes that pack several elements into one byte: elements per byte.
_PACKED = {"torch.quint4x2": 2, "torch.quint2x4": 4}


def _metadata_only(t: torch.Tensor) -> str | None:
    """Why a tensor has no readable values, or None if it has some."""
    if t.device.type == "meta":
        return "a meta tensor has shape and dtype but no data"
    try:
        from torch._subclasses.fake_tensor import FakeTensor

        if isinstance(t, FakeTensor):
            return "a fake tensor (torch.compile tracing) has shape and dtype but no data"
    except ImportError:  # pragma: no cover
        pass
    return None


def _torch_memory_format(t: torch.Tensor) -> str:
    if t.is_contiguous():
        return "C"
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return "channels_last"
    if t.dim() == 5 and t.is_contiguous(memory_format=torch.channels_last_3d):
        return "channels_last_3d"
    if t.permute(*reversed(range(t.dim()))).is_contiguous():
        return "Fortran"
    return "strided"


def _grad_summary(t: torch.Tensor) -> str | None:
    g = t.grad if t.is_leaf or t.retains_grad else None
    if g is None:
        return None
    return grad_text(g)


def grad_text(g: torch.Tensor) -> str:
    """A gradient in a few words: its values (small), else dtype, shape and norm."""
    with torch.no_grad():
        if g.layout != torch.strided or g.is_nested:
            return f"{g.dtype} {list(g.shape)} ({str(g.layout).removeprefix('torch.')})"
        if g.numel() <= 8 and g.device.type != "meta":
            values = g.detach().cpu().reshape(-1).tolist()
            shown = values[0] if g.dim() == 0 else values
            return f"{shown} ({g.dtype}, shape {list(g.shape)})"
        if g.layout == torch.strided and g.device.type != "meta":
            # the norm chunk by chunk: g.double().norm() would copy the whole gradient
            widened = (c.to(torch.complex128).abs() if c.is_complex() else c.to(torch.float64) for c in iter_chunks(g.detach(), CPU_CHUNK))
            sq = sum(float(torch.dot(c, c)) for c in widened)
            return f"{g.dtype} {list(g.shape)}, norm {math.sqrt(sq):.4g}"
        return f"{g.dtype} {list(g.shape)}"


def _sparse_facts(t: torch.Tensor, numel: int, budget: int, details: dict[str, Any]) -> tuple[ValueStats | None, str | None, int | None]:
    """Statistics over the specified values (duplicates of an uncoalesced COO summed first)."""
    layout = str(t.layout).removeprefix("torch.")
    coalesced = True
    summed = True
    if t.layout == torch.sparse_coo:
        coalesced = bool(t.is_coalesced())
        stored = t._values()
        # coalescing copies indices and values: fine when small, not for a big sparse tensor
        summed = coalesced or stored.numel() <= MAX_COALESCE
        values = stored if coalesced or not summed else t.coalesce()._values()
    else:
        stored = values = t.values()
    nnz = guarded(None, t._nnz)
    specified = int(values.numel())
    facts: dict[str, Any] = {"layout": layout, "nnz": nnz, "stored_values": int(stored.numel()), "density": (specified / numel) if numel else 0.0}
    facts["implicit_zeros"] = numel - specified
    if not coalesced:
        facts["coalesced"] = False
    details["sparse"] = facts
    stats, note = safe_stats(lambda: tensor_stats(values, budget))
    if stats is not None:
        how = "" if coalesced else ("; duplicate entries summed" if summed else "; uncoalesced: duplicate entries NOT summed (call .coalesce())")
        stats.over = f"the {specified:,} specified values (implicit zeros excluded{how})"
    index_bytes = 0
    for getter in ("_indices", "crow_indices", "col_indices", "ccol_indices", "row_indices"):
        try:
            idx = getattr(t, getter)()
            index_bytes += idx.numel() * idx.element_size()
        except Exception:  # noqa: BLE001 - not every sparse layout has every index
            continue
    return stats, note, stored.numel() * stored.element_size() + index_bytes


def _quantized_facts(t: torch.Tensor, details: dict[str, Any]) -> tuple[ValueStats | None, str | None, int | None]:
    """Scheme, scales and exact statistics of the dequantized values, piece by piece."""
    q: dict[str, Any] = {"scheme": str(t.qscheme()).removeprefix("torch.")}
    if t.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        q.update(scale=float(t.q_scale()), zero_point=int(t.q_zero_point()))
    else:
        scales = t.q_per_channel_scales()
        q.update(axis=int(t.q_per_channel_axis()), channels=int(scales.numel()), scales=scales[:8].tolist(), zero_points=t.q_per_channel_zero_points()[:8].tolist())
    details["quantized"] = q

    def dequantized() -> ValueStats:
        # Dequantizing the whole tensor would make a float32 copy 4x its size: one piece at a time.
        s = chunks_stats((p.dequantize() for p in pieces(t, CPU_CHUNK)), torch.float32, t.device, "dequantized values")
        s.over = "dequantized values"
        return s

    stats, note = safe_stats(dequantized)
    storage = guarded(None, lambda: t.untyped_storage().nbytes())
    return stats, note, storage


def _nested_facts(t: torch.Tensor, budget: int, details: dict[str, Any]) -> tuple[ValueStats | None, str | None, int | None, int]:
    """Component shapes, storage and statistics of a nested tensor (no concatenated copy)."""
    jagged = t.layout == torch.jagged
    components = t.unbind()
    numel = sum(c.numel() for c in components)
    facts: dict[str, Any] = {"components": len(components), "component_shapes": [list(c.shape) for c in components[:20]]}
    if jagged:
        facts["shape"] = str(tuple(t.shape))
    details["nested"] = facts
    if jagged:
        values = t.values()
        stats, note = safe_stats(lambda: tensor_stats(values, budget))
        storage = guarded(None, lambda: values.untyped_storage().nbytes() + t.offsets().numel() * t.offsets().element_size())  # type: ignore[attr-defined]  # a nested tensor
    else:
        stats, note = safe_stats(lambda: chunks_stats((p for c in components for p in iter_chunks(c, CPU_CHUNK)), t.dtype, t.device))
        storage = guarded(None, lambda: t.untyped_storage().nbytes())
    return stats, note, storage, numel


def _uninitialized_info(name: str, t: torch.Tensor, namespace: Mapping[str, Any] | None, hidden: frozenset[str] | set[str]) -> TensorInfo:
    """The report of an uninitialized parameter or buffer: dtype, device and autograd flags are
    known, shape, strides and values are not (torch refuses every other question until the
    lazy module's first forward)."""
    twin = numpy_twin_of_torch(t.dtype)
    lazy = "a lazy module's parameter" if isinstance(t, torch.nn.Parameter) else "a lazy module's buffer"
    return TensorInfo(
        name=name,
        type=type_name(t),
        dtype=str(t.dtype),
        equivalent_dtype=twin.twin,
        equivalent_note=twin.note,
        shape=None,
        ndim=0,
        numel=0,
        itemsize=torch.empty((), dtype=t.dtype).element_size(),
        strides=None,
        byte_strides=None,
        contiguous=None,
        memory_format="uninitialized",
        storage_offset=None,
        nbytes=0,
        storage_nbytes=None,
        device=str(t.device),
        layout="uninitialized",
        requires_grad=bool(t.requires_grad),
        is_leaf=True,
        grad_fn=None,
        grad=None,
        version=None,
        stats=None,
        stats_note=f"{UNINITIALIZED} ({lazy}): no values yet",
        aliases=find_aliases(name, t, namespace, hidden) if namespace is not None else [],
        conversion=[],
        dtype_table=dtype_table(),
        details={"uninitialized": True},
        notes=[f"{UNINITIALIZED}: {lazy}; run one forward pass (or call its module's initialize_parameters) to create it"],
    )


def no_pictures(name: str, why: str, opts: PictureOptions) -> None:
    """Raise :class:`PictureError` when pictures were asked for of an object that has none."""
    if opts.kinds or opts.denorm is not None:
        raise PictureError(f"{name} has no pictures: {why}")


def inspect_tensor(
    name: str,
    t: torch.Tensor,
    namespace: Mapping[str, Any] | None = None,
    budget: int = DEFAULT_BUDGET,
    hidden: frozenset[str] | set[str] = frozenset(),
    pictures: PictureOptions | None = None,
    *,
    global_stats: bool = False,
    timeout: float | None = None,
) -> TensorInfo:
    """Build the report of a torch tensor (any layout, dtype or device); ``pictures``: which
    pictures to draw of a dense one (default: those its shape gets); a DTensor's from its local
    shard (``global_stats``: the whole tensor's statistics, see :mod:`~tensormagic.engine.sharding`)."""
    opts = pictures if pictures is not None else PictureOptions()
    if is_dtensor(t):
        from tensormagic.engine.sharding.report import inspect_dtensor

        no_pictures(name, "the pictures of a DTensor are not drawn yet (its values live on several ranks)", opts)
        return inspect_dtensor(name, t, namespace, budget, hidden, global_stats=global_stats, timeout=timeout)  # type: ignore[arg-type]
    if is_uninitialized(t):
        no_pictures(name, "an uninitialized parameter has no values yet", opts)
        return _uninitialized_info(name, t, namespace, hidden)
    twin = numpy_twin_of_torch(t.dtype) if not t.is_quantized else DtypeTwin(str(t.dtype), None, "quantized dtypes have no NumPy twin; use .dequantize() or .int_repr()")
    details: dict[str, Any] = {}
    notes: list[str] = []
    layout = str(t.layout).removeprefix("torch.")
    nested = bool(getattr(t, "is_nested", False))
    meta_reason = _metadata_only(t)
    strided = t.layout == torch.strided and not nested
    itemsize = t.element_size()
    shape: list[int] | None = None if nested else list(t.shape)
    numel = 0 if nested else t.numel()
    strides = guarded(None, lambda: list(t.stride())) if strided else None
    stats: ValueStats | None = None
    stats_note: str | None = None
    histogram: Histogram | None = None
    drawn: Pictures | None = None
    storage_nbytes: int | None = None
    if not strided or meta_reason or t.is_quantized:
        no_pictures(name, meta_reason or f"pictures are drawn of dense (strided) tensors, not {layout} ones", opts)
    if meta_reason:
        stats_note = meta_reason + ": no statistics"
        if nested:
            numel = guarded(0, lambda: sum(c.numel() for c in t.unbind()))
    elif nested:
        stats, stats_note, storage_nbytes, numel = _nested_facts(t, budget, details)
    elif t.layout in _SPARSE_LAYOUTS:
        stats, stats_note, storage_nbytes = _sparse_facts(t, numel, budget, details)
    elif t.is_quantized:
        stats, stats_note, storage_nbytes = _quantized_facts(t, details)
    else:
        wanted = guarded([], lambda: tensor_grids(t, opts))
        got, stats_note = safe_stats(lambda: stats_sample_grids(t, budget, wanted))
        stats, sample, grids = got if got is not None else (None, None, {})
        if stats is not None:
            histogram, _ = safe_stats(lambda: value_histogram(t, stats.min, stats.max, sample=sample, stats=stats))
        if opts.kinds != ():
            drawn = safe_pictures(t, stats, budget, opts, sample, grids)
    if nested:
        layout = "nested (" + layout + ")"
    if strided and storage_nbytes is None:
        # A meta or fake tensor's storage has a size but no bytes behind it: say so in details.
        storage_nbytes = guarded(None, lambda: t.untyped_storage().nbytes())
        if meta_reason and storage_nbytes is not None:
            details["storage_allocated"] = False
    per_byte = _PACKED.get(str(t.dtype))
    nbytes = -(-numel // per_byte) if per_byte else numel * itemsize
    if per_byte:
        notes.append(f"{t.dtype} packs {per_byte} elements into each byte")
    if storage_nbytes is not None and strided and nbytes > storage_nbytes:
        notes.append(f"{nbytes:,} logical bytes over only {storage_nbytes:,} bytes of storage: elements repeat (a stride of 0, e.g. from expand)")
    elif storage_nbytes is not None and strided and storage_nbytes > nbytes:
        notes.append(f"a view: its storage holds {storage_nbytes:,} bytes, this tensor uses {nbytes:,} of them")
    if meta_reason and storage_nbytes is not None:
        notes.append(f"{storage_nbytes:,} bytes of storage are described, none allocated ({meta_reason})")
    grad_fn = guarded("?", lambda: type(t.grad_fn).__name__ if t.grad_fn is not None else None)
    requires = bool(t.requires_grad)
    aliases = find_aliases(name, t, namespace, hidden) if namespace is not None else []
    version = None
    if strided and not meta_reason:
        version = guarded(None, lambda: int(t._version))  # inference tensors track no version
        if version is None and guarded(False, t.is_inference):
            details["inference"] = True
            notes.append("an inference tensor (made under torch.inference_mode): no version counter, cannot be saved for backward")
    return TensorInfo(
        name=name,
        type=type_name(t),
        dtype=str(t.dtype),
        equivalent_dtype=twin.twin,
        equivalent_note=twin.note,
        shape=shape,
        ndim=t.dim(),
        numel=numel,
        itemsize=itemsize,
        strides=strides,
        byte_strides=[s * itemsize for s in strides] if strides is not None else None,
        contiguous=guarded(None, t.is_contiguous) if strided else None,
        memory_format=guarded("strided", lambda: _torch_memory_format(t)) if strided else layout,
        storage_offset=guarded(None, lambda: int(t.storage_offset())) if strided else None,
        nbytes=nbytes,
        storage_nbytes=storage_nbytes,
        device=str(t.device),
        layout=layout,
        requires_grad=requires,
        is_leaf=bool(t.is_leaf),
        grad_fn=grad_fn,
        grad=guarded("(could not be summarised)", lambda: _grad_summary(t)) if not nested else None,
        version=version,
        stats=stats,
        stats_note=stats_note,
        aliases=aliases,
        conversion=guarded([], lambda: tensor_conversions(t)),
        dtype_table=dtype_table(),
        histogram=histogram,
        details=details,
        notes=notes,
        pictures=drawn,
    )
