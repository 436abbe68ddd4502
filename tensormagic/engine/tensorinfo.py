"""``%tensorinfo``'s engine: the whole truth about one array, tensor or module.

Pure: takes objects and a namespace, returns report dataclasses of plain values.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from tensormagic.engine import memory
from tensormagic.engine.dtypes import DtypeTwin, dtype_table, numpy_dtype_name, numpy_twin_of_torch, torch_twin_of_numpy
from tensormagic.engine.namespace import NamedObject, named_arrays, user_names, is_inspectable
from tensormagic.engine.report import Report
from tensormagic.engine.stats import CPU_CHUNK, DEFAULT_BUDGET, Histogram, ValueStats, chunks_stats, iter_chunks, numpy_stats, pieces, tensor_stats, value_histogram

#: Stored values of an uncoalesced COO tensor up to which it is coalesced (a copy) for statistics.
MAX_COALESCE = 2**22
#: Aliases listed at most for one object.
MAX_ALIASES = 50
#: Exact overlap checks at most when grouping a whole namespace (then ranges decide).
MAX_EXACT_CHECKS = 20_000
#: Seconds of exact overlap checks per report (each is bounded by memory.EXACT_OVERLAP_WORK);
#: past it, overlapping byte ranges answer "may share memory".
EXACT_TIME_BUDGET = 0.5
#: Overlapping pairs examined at most when grouping a namespace; past it, whole clusters of
#: overlapping byte ranges are grouped at once (many views of one buffer make n^2 pairs).
MAX_PAIRS = 100_000


@dataclass
class Alias:
    """Another variable whose memory overlaps the inspected object's."""

    name: str
    relation: str
    detail: str


@dataclass
class Conversion:
    """What one NumPy <-> Torch conversion would do with the object."""

    call: str
    result: str  # "shares memory" | "copies" | "fails" | "not applicable" | "same object"
    detail: str


@dataclass(repr=False)
class TensorInfo(Report):
    """Everything about one array or tensor (see ``%tensorinfo?``)."""

    name: str
    type: str
    dtype: str
    equivalent_dtype: str | None
    equivalent_note: str | None
    shape: list[int] | None
    ndim: int
    numel: int
    itemsize: int
    strides: list[int] | None
    byte_strides: list[int] | None
    contiguous: bool | None
    memory_format: str
    storage_offset: int | None
    nbytes: int
    storage_nbytes: int | None
    device: str
    layout: str
    requires_grad: bool | None
    is_leaf: bool | None
    grad_fn: str | None
    grad: str | None
    version: int | None
    stats: ValueStats | None
    stats_note: str | None
    aliases: list[Alias]
    conversion: list[Conversion]
    dtype_table: list[DtypeTwin]
    histogram: Histogram | None = None
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    PANEL: ClassVar[str] = "tensormagic.render.tensorinfo_panel:tensor_panel"

    def summary(self) -> str:
        shape = "x".join(map(str, self.shape)) if self.shape else ("scalar" if self.shape == [] else "?")
        return f"{self.name}: {self.type} {self.dtype} [{shape}] on {self.device}"


@dataclass
class ParameterRow:
    """One parameter or buffer of a module."""

    name: str
    kind: str  # "parameter" | "buffer"
    shape: list[int]
    dtype: str
    device: str
    numel: int
    nbytes: int
    trainable: bool


@dataclass(repr=False)
class ModuleInfo(Report):
    """Summary of a ``torch.nn.Module``'s parameters and buffers."""

    name: str
    type: str
    parameters: int
    trainable_parameters: int
    parameter_bytes: int
    buffers: int
    buffer_bytes: int
    dtypes: dict[str, int]
    devices: dict[str, int]
    rows: list[ParameterRow]
    shared: list[dict[str, Any]]
    structure: str
    notes: list[str] = field(default_factory=list)

    PANEL: ClassVar[str] = "tensormagic.render.tensorinfo_panel:module_panel"

    def summary(self) -> str:
        return f"{self.name}: {self.type}, {self.parameters:,} parameters on {', '.join(self.devices) or 'no device'}"


@dataclass
class NamespaceEntry:
    """One row of the whole-namespace table."""

    name: str
    type: str
    dtype: str
    shape: list[int] | None
    device: str
    nbytes: int
    group: int | None  # entries sharing memory have the same group number
    relation: str | None


@dataclass(repr=False)
class NamespaceInfo(Report):
    """Every array, tensor and module in the namespace, grouped by shared memory."""

    entries: list[NamespaceEntry]
    groups: list[list[str]]
    total_bytes: int
    notes: list[str] = field(default_factory=list)

    PANEL: ClassVar[str] = "tensormagic.render.tensorinfo_panel:namespace_panel"

    def summary(self) -> str:
        return f"{len(self.entries)} arrays, tensors and modules, {len(self.groups)} groups sharing memory"


# ---------------------------------------------------------------------------------------------
# helpers


def _type_name(obj: Any) -> str:
    kind = type(obj)
    if isinstance(obj, torch.nn.Parameter):
        return "torch.nn.Parameter"
    if isinstance(obj, torch.Tensor) and kind.__module__.startswith("torch"):
        return "torch.Tensor" if kind is torch.Tensor else f"torch.Tensor ({kind.__qualname__})"
    if isinstance(obj, np.ndarray) and kind is np.ndarray:
        return "numpy.ndarray"
    if isinstance(obj, np.generic):
        return f"numpy.{kind.__name__}"
    return f"{kind.__module__}.{kind.__qualname__}"


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


def _numpy_memory_format(a: np.ndarray) -> str:
    if a.flags.c_contiguous:
        return "C"
    if a.flags.f_contiguous:
        return "Fortran"
    return "strided"


def _numpy_storage_nbytes(a: np.ndarray) -> int | None:
    """Bytes of the memory block ``a`` lives in (its owner's size), None if unknown."""
    root = memory.root_base(a)
    if isinstance(root, torch.Tensor):  # an array made by tensor.numpy()
        return _guard(None, lambda: int(root.untyped_storage().nbytes()))
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
        return _guard(None, lambda: int(np.asarray(owner).nbytes))
    return None


def _grad_summary(t: torch.Tensor) -> str | None:
    g = t.grad if t.is_leaf or t.retains_grad else None
    if g is None:
        return None
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


def _try(action: str, fn: Any) -> Conversion:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()
    except Exception as exc:  # noqa: BLE001 - the library's own reason is what we report
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Conversion(action, "fails", first)


def _tensor_conversions(t: torch.Tensor) -> list[Conversion]:
    def numpy() -> Conversion:
        a = t.numpy()
        shares = memory.exact_overlap(memory.memory_region(a), memory.memory_region(t)) if t.numel() else True
        return Conversion(".numpy()", "shares memory" if shares else "copies", "a NumPy view of the same bytes: changes show in both")

    fixes = []
    if t.requires_grad:
        fixes.append(".detach()")
    if t.device.type != "cpu":
        fixes.append(".cpu()")
    if t.dtype in (torch.bfloat16, torch.complex32) or "float8" in str(t.dtype):
        fixes.append(".float()")
    conv = _try(".numpy()", numpy)
    if conv.result == "fails" and fixes:
        cost = "the same memory, no copy" if fixes == [".detach()"] else "a copy"
        conv.detail += f" - use t{''.join(fixes)}.numpy() ({cost})"
    return [
        conv,
        Conversion("torch.from_numpy(t)", "not applicable", "takes a NumPy array, not a tensor"),
        Conversion("torch.tensor(t)", "copies", "always copies (and detaches); torch suggests t.clone().detach()"),
        Conversion("torch.as_tensor(t)", "same object", "returns the tensor itself when dtype and device already match"),
    ]


def _array_conversions(a: np.ndarray) -> list[Conversion]:
    def from_numpy() -> Conversion:
        t = torch.from_numpy(a)
        detail = "a tensor over the same bytes: changes show in both"
        if not a.flags.writeable:
            detail += " (the array is read-only; torch warns that writes are undefined)"
        return Conversion("torch.from_numpy(a)", "shares memory", detail)

    def tensor() -> Conversion:
        torch.tensor(a[(0,) * a.ndim] if a.ndim and a.size else a)  # probe the dtype cheaply
        return Conversion("torch.tensor(a)", "copies", "always copies: later changes to a do not show in the tensor")

    def as_tensor() -> Conversion:
        shared = from_numpy()
        if shared.result == "shares memory":
            return Conversion("torch.as_tensor(a)", "shares memory", "shares like torch.from_numpy (on the CPU, same dtype)")
        return Conversion("torch.as_tensor(a)", "copies", "")

    conv_as = _try("torch.as_tensor(a)", as_tensor)
    if conv_as.result == "fails" and a.dtype.kind in "biufc":
        conv_as = Conversion("torch.as_tensor(a)", "copies", "cannot share this layout, so it copies")
    return [
        Conversion("a.numpy()", "not applicable", "already a NumPy array"),
        _try("torch.from_numpy(a)", from_numpy),
        _try("torch.tensor(a)", tensor),
        conv_as,
    ]


def _safe_stats(fn: Any) -> tuple[ValueStats | None, str | None]:
    try:
        return fn(), None
    except Exception as exc:  # noqa: BLE001 - never raise on an exotic tensor
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return None, f"statistics unavailable: {type(exc).__name__}: {first}".rstrip(": ")


# ---------------------------------------------------------------------------------------------
# aliases


def find_aliases(name: str, obj: Any, namespace: Mapping[str, Any], hidden: frozenset[str] | set[str] = frozenset()) -> list[Alias]:
    """Other variables of ``namespace`` whose memory overlaps ``obj``'s (or that are ``obj``)."""
    target = memory.memory_region(obj)
    found: list[Alias] = []
    deadline = time.perf_counter() + EXACT_TIME_BUDGET
    for other in named_arrays(namespace, hidden):
        if other.name == name:
            continue
        r = memory.memory_region(other.obj)
        if other.obj is not obj and (target is None or r is None or r.space != target.space or r.hi <= target.lo or target.hi <= r.lo):
            continue
        rel = memory.relation(obj, other.obj, target, r, exact=time.perf_counter() < deadline)
        if rel is not None:
            found.append(Alias(other.name, rel[0], rel[1]))
        if len(found) >= MAX_ALIASES:
            break
    return found


# ---------------------------------------------------------------------------------------------
# builders


_SPARSE_LAYOUTS = (torch.sparse_coo, torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc)
#: Quantized dtypes that pack several elements into one byte: elements per byte.
_PACKED = {"torch.quint4x2": 2, "torch.quint2x4": 4}


def _guard(default: Any, fn: Any) -> Any:
    """``fn()``, or ``default`` if an exotic tensor makes it raise (a report never raises)."""
    try:
        return fn()
    except Exception:  # noqa: BLE001
        return default


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
    nnz = _guard(None, t._nnz)
    specified = int(values.numel())
    facts: dict[str, Any] = {"layout": layout, "nnz": nnz, "stored_values": int(stored.numel()), "density": (specified / numel) if numel else 0.0}
    facts["implicit_zeros"] = numel - specified
    if not coalesced:
        facts["coalesced"] = False
    details["sparse"] = facts
    stats, note = _safe_stats(lambda: tensor_stats(values, budget))
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

    stats, note = _safe_stats(dequantized)
    storage = _guard(None, lambda: t.untyped_storage().nbytes())
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
        stats, note = _safe_stats(lambda: tensor_stats(values, budget))
        storage = _guard(None, lambda: values.untyped_storage().nbytes() + t.offsets().numel() * t.offsets().element_size())
    else:
        stats, note = _safe_stats(lambda: chunks_stats((p for c in components for p in iter_chunks(c, CPU_CHUNK)), t.dtype, t.device))
        storage = _guard(None, lambda: t.untyped_storage().nbytes())
    return stats, note, storage, numel


def inspect_tensor(name: str, t: torch.Tensor, namespace: Mapping[str, Any] | None = None, budget: int = DEFAULT_BUDGET, hidden: frozenset[str] | set[str] = frozenset()) -> TensorInfo:
    """Build the report of a torch tensor (any layout, dtype or device)."""
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
    strides = _guard(None, lambda: list(t.stride())) if strided else None
    stats: ValueStats | None = None
    stats_note: str | None = None
    histogram: Histogram | None = None
    storage_nbytes: int | None = None
    if meta_reason:
        stats_note = meta_reason + ": no statistics"
        if nested:
            numel = _guard(0, lambda: sum(c.numel() for c in t.unbind()))
    elif nested:
        stats, stats_note, storage_nbytes, numel = _nested_facts(t, budget, details)
    elif t.layout in _SPARSE_LAYOUTS:
        stats, stats_note, storage_nbytes = _sparse_facts(t, numel, budget, details)
    elif t.is_quantized:
        stats, stats_note, storage_nbytes = _quantized_facts(t, details)
    else:
        stats, stats_note = _safe_stats(lambda: tensor_stats(t, budget))
        if stats is not None:
            histogram, _ = _safe_stats(lambda: value_histogram(t, stats.min, stats.max))
    if nested:
        layout = "nested (" + layout + ")"
    if strided and storage_nbytes is None:
        # A meta or fake tensor's storage has a size but no bytes behind it: say so in details.
        storage_nbytes = _guard(None, lambda: t.untyped_storage().nbytes())
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
    grad_fn = _guard("?", lambda: type(t.grad_fn).__name__ if t.grad_fn is not None else None)
    requires = bool(t.requires_grad)
    aliases = find_aliases(name, t, namespace, hidden) if namespace is not None else []
    version = None
    if strided and not meta_reason:
        version = _guard(None, lambda: int(t._version))  # inference tensors track no version
        if version is None and _guard(False, t.is_inference):
            details["inference"] = True
            notes.append("an inference tensor (made under torch.inference_mode): no version counter, cannot be saved for backward")
    return TensorInfo(
        name=name,
        type=_type_name(t),
        dtype=str(t.dtype),
        equivalent_dtype=twin.twin,
        equivalent_note=twin.note,
        shape=shape,
        ndim=t.dim(),
        numel=numel,
        itemsize=itemsize,
        strides=strides,
        byte_strides=[s * itemsize for s in strides] if strides is not None else None,
        contiguous=_guard(None, t.is_contiguous) if strided else None,
        memory_format=_guard("strided", lambda: _torch_memory_format(t)) if strided else layout,
        storage_offset=_guard(None, t.storage_offset) if strided else None,
        nbytes=nbytes,
        storage_nbytes=storage_nbytes,
        device=str(t.device),
        layout=layout,
        requires_grad=requires,
        is_leaf=bool(t.is_leaf),
        grad_fn=grad_fn,
        grad=_guard("(could not be summarised)", lambda: _grad_summary(t)) if not nested else None,
        version=version,
        stats=stats,
        stats_note=stats_note,
        aliases=aliases,
        conversion=_guard([], lambda: _tensor_conversions(t)),
        dtype_table=dtype_table(),
        histogram=histogram,
        details=details,
        notes=notes,
    )


def inspect_array(name: str, a: np.ndarray | np.generic, namespace: Mapping[str, Any] | None = None, budget: int = DEFAULT_BUDGET, hidden: frozenset[str] | set[str] = frozenset()) -> TensorInfo:
    """Build the report of a NumPy array or NumPy scalar."""
    type_name = _type_name(a)
    scalar = isinstance(a, np.generic)
    arr = np.asarray(a)
    twin = torch_twin_of_numpy(arr.dtype)
    stats, stats_note = _safe_stats(lambda: numpy_stats(arr, budget))
    histogram = None
    if stats is not None and arr.dtype.kind in "biuf" and arr.dtype.isnative and arr.dtype.itemsize <= 8:
        flipped = arr[tuple(slice(None, None, -1) if s < 0 else slice(None) for s in arr.strides)]
        histogram, _ = _safe_stats(lambda: value_histogram(torch.from_numpy(flipped), stats.min, stats.max))
    if stats is None and stats_note is None:
        stats_note = f"no statistics for dtype {arr.dtype} (not numeric)"
    itemsize = arr.itemsize
    strides = [s // itemsize if itemsize else 0 for s in arr.strides]
    storage = arr.itemsize if scalar else _numpy_storage_nbytes(arr)
    notes: list[str] = []
    if storage is not None and arr.nbytes > storage:
        notes.append(f"{arr.nbytes:,} logical bytes over only {storage:,} bytes of memory: elements repeat (a stride of 0, e.g. from np.broadcast_to)")
    elif storage is not None and storage > arr.nbytes and not scalar:
        notes.append(f"a view: its base holds {storage:,} bytes, this array uses {arr.nbytes:,} of them")
    if any(s % itemsize for s in arr.strides if itemsize):
        notes.append("strides are not whole elements; byte_strides are exact")
    aliases = find_aliases(name, a, namespace, hidden) if namespace is not None and not scalar else []
    conversion = _array_conversions(arr) if not scalar else [
        Conversion("torch.from_numpy(a)", "fails", "expects an np.ndarray; a NumPy scalar is not one"),
        Conversion("torch.tensor(a)", "copies", "makes a 0-d tensor"),
        Conversion("torch.as_tensor(a)", "copies", "makes a 0-d tensor"),
    ]
    return TensorInfo(
        name=name,
        type=type_name,
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


def inspect_module(name: str, module: torch.nn.Module, max_rows: int = 200) -> ModuleInfo:
    """Summarise a module: parameter and buffer counts, dtypes, devices, bytes, sharing."""
    rows: list[ParameterRow] = []
    seen: dict[int, str] = {}
    shared: list[dict[str, Any]] = []
    dtypes: Counter[str] = Counter()
    devices: Counter[str] = Counter()
    params = trainable = pbytes = nbuf = bbytes = 0
    regions: list[tuple[str, memory.MemoryRegion | None, torch.Tensor]] = []
    for kind, items in (("parameter", module.named_parameters(remove_duplicate=False)), ("buffer", module.named_buffers(remove_duplicate=False))):
        for pname, p in items:
            if p is None:
                continue
            if id(p) in seen:
                shared.append({"names": [seen[id(p)], pname], "relation": "same object", "detail": f"tied: the same {kind} is registered twice"})
                continue
            seen[id(p)] = pname
            size = p.numel() * p.element_size()
            dtypes[str(p.dtype)] += p.numel()
            devices[str(p.device)] += 1
            if kind == "parameter":
                params += p.numel()
                pbytes += size
                trainable += p.numel() if p.requires_grad else 0
            else:
                nbuf += p.numel()
                bbytes += size
            regions.append((pname, memory.memory_region(p), p))
            if len(rows) < max_rows:
                rows.append(ParameterRow(pname, kind, list(p.shape), str(p.dtype), str(p.device), p.numel(), size, bool(p.requires_grad)))
    for i, j in memory.overlapping_pairs([r for _, r, _ in regions]):
        rel = memory.relation(regions[i][2], regions[j][2], regions[i][1], regions[j][1])
        if rel is not None:
            shared.append({"names": [regions[i][0], regions[j][0]], "relation": rel[0], "detail": rel[1]})
    notes: list[str] = []
    if len(devices) > 1:
        notes.append(f"parameters and buffers sit on {len(devices)} devices ({', '.join(devices)}): inputs must match each layer's device")
    try:
        structure_lines = str(module).splitlines()
    except Exception as exc:  # noqa: BLE001 - a user's extra_repr/__repr__ may raise: report, never raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        structure_lines = [f"{type(module).__name__}(...)  # repr raised {type(exc).__name__}: {first}"]
        notes.append(f"printing the module raised {type(exc).__name__}: {first}")
    structure = "\n".join(structure_lines[:60]) + (f"\n... ({len(structure_lines) - 60} more lines)" if len(structure_lines) > 60 else "")
    return ModuleInfo(
        name=name,
        type=f"{type(module).__module__}.{type(module).__qualname__}",
        parameters=params,
        trainable_parameters=trainable,
        parameter_bytes=pbytes,
        buffers=nbuf,
        buffer_bytes=bbytes,
        dtypes=dict(dtypes),
        devices=dict(devices),
        rows=rows,
        shared=shared,
        structure=structure,
        notes=notes,
    )


def inspect_object(name: str, obj: Any, namespace: Mapping[str, Any] | None = None, budget: int = DEFAULT_BUDGET, hidden: frozenset[str] | set[str] = frozenset()) -> TensorInfo | ModuleInfo:
    """Dispatch on the object's kind; raises TypeError for objects that are not inspectable."""
    if isinstance(obj, torch.Tensor):
        return inspect_tensor(name, obj, namespace, budget, hidden)
    if isinstance(obj, (np.ndarray, np.generic)):
        return inspect_array(name, obj, namespace, budget, hidden)
    if isinstance(obj, torch.nn.Module):
        return inspect_module(name, obj)
    raise TypeError(f"{name} is a {type(obj).__name__}, not an array, tensor or module")


def _entry_of(item: NamedObject) -> NamespaceEntry:
    obj = item.obj
    if isinstance(obj, torch.Tensor):
        nested = bool(getattr(obj, "is_nested", False))
        shape = None if nested else list(obj.shape)
        numel = sum(c.numel() for c in obj.unbind()) if nested else obj.numel()
        return NamespaceEntry(item.name, _type_name(obj), str(obj.dtype), shape, str(obj.device), numel * obj.element_size(), None, None)
    arr = np.asarray(obj)
    return NamespaceEntry(item.name, _type_name(obj), numpy_dtype_name(arr.dtype), list(arr.shape), "cpu", int(arr.nbytes), None, None)


def inspect_namespace(namespace: Mapping[str, Any], hidden: frozenset[str] | set[str] = frozenset()) -> NamespaceInfo:
    """One table of every array, tensor and module, grouped by what shares memory."""
    items = named_arrays(namespace, hidden, include_module_tensors=False)
    entries = [_entry_of(item) for item in items]
    for name in user_names(namespace, hidden):
        obj = namespace[name]
        if isinstance(obj, torch.nn.Module):
            info = inspect_module(name, obj, max_rows=0)
            entries.append(NamespaceEntry(name, info.type, ", ".join(info.dtypes) or "-", None, ", ".join(info.devices) or "-", info.parameter_bytes + info.buffer_bytes, None, None))
    regions = [memory.memory_region(item.obj) for item in items]
    parent = list(range(len(items)))
    relations: dict[int, str] = {}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    checks = 0
    by_object: dict[int, int] = {}
    for i, item in enumerate(items):
        j = by_object.setdefault(id(item.obj), i)
        if j != i:
            parent[find(i)] = find(j)
            relations[i] = memory.SAME_OBJECT
    notes: list[str] = []
    deadline = time.perf_counter() + EXACT_TIME_BUDGET
    pairs = 0
    cut_short = unchecked = False
    for i, j in memory.overlapping_pairs(regions):
        pairs += 1
        if pairs > MAX_PAIRS:
            cut_short = True
            break
        if find(i) == find(j):
            continue
        exact = checks < MAX_EXACT_CHECKS and time.perf_counter() < deadline
        checks += exact
        rel = memory.relation(items[i].obj, items[j].obj, regions[i], regions[j], exact=exact)
        if rel is None:
            continue
        unchecked |= rel[1] == memory.UNCHECKED
        parent[find(j)] = find(i)
        relations.setdefault(j, rel[0])
    if cut_short:
        # Union whole clusters of overlapping byte ranges (a sweep: n log n, no pairs).
        order = sorted((i for i, r in enumerate(regions) if r is not None), key=lambda i: (regions[i].space, regions[i].lo))
        head, space, reach = None, None, -1
        for i in order:
            r = regions[i]
            if r.space != space or r.lo >= reach:
                head, space, reach = i, r.space, r.hi
                continue
            reach = max(reach, r.hi)
            if find(i) != find(head):
                parent[find(i)] = find(head)
                relations.setdefault(i, memory.MAY_SHARE)
        notes.append(f"more than {MAX_PAIRS:,} overlapping pairs: the rest are grouped by byte ranges (may share memory)")
    elif unchecked:
        notes.append("some overlaps were decided by byte ranges alone (may share memory): exact checks took too long")
    members: dict[int, list[int]] = {}
    for i in range(len(items)):
        members.setdefault(find(i), []).append(i)
    groups = [idx for idx in members.values() if len(idx) > 1]
    for number, idx in enumerate(groups, start=1):
        for i in idx:
            entries[i].group = number
            entries[i].relation = relations.get(i)
    total = sum(e.nbytes for e in entries[: len(items)])
    return NamespaceInfo(entries=entries, groups=[[items[i].name for i in idx] for idx in groups], total_bytes=total, notes=notes)


__all__ = [
    "Alias",
    "Conversion",
    "ModuleInfo",
    "NamespaceEntry",
    "NamespaceInfo",
    "ParameterRow",
    "TensorInfo",
    "find_aliases",
    "inspect_array",
    "inspect_module",
    "inspect_namespace",
    "inspect_object",
    "inspect_tensor",
    "is_inspectable",
]
