"""Where everything in a namespace lives: tensors, arrays, modules, optimizers and containers.

Pure (torch and numpy).  :func:`leaves` walks any movable object down to its tensors and arrays
with a readable path for each (``model.0.weight``, ``batch['x']``, ``d.keys()[0]``);
:func:`placement` turns a namespace into one row per variable and flags modules split across
devices.  Objects are classified by their true type, and one that raises while it is read gets
a row that says so: it never breaks the listing of the others.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tensormagic.engine.namespace import user_names
from tensormagic.engine.naming import (
    UNINITIALIZED,
    describe_exception,
    is_array,
    is_masked_array,
    is_module,
    is_optimizer,
    is_tensor,
    is_uninitialized,
    type_name,
)
from tensormagic.engine.sharding.detect import as_dtensor, is_fsdp_module
from tensormagic.engine.sharding.layout import mesh_words, placement_text
from tensormagic.engine.tensorinfo.dtypes import numpy_dtype_name
from tensormagic.engine.tensorinfo.statistics.masked import masked_count

#: How deep :func:`leaves` follows nested dicts, lists and tuples.
MAX_DEPTH = 8
#: Leaves followed at most inside one object (huge lists stay cheap to show).
MAX_LEAVES = 10_000

CONTAINERS = (dict, list, tuple)


def is_container(obj: Any) -> bool:
    """A dict, list or tuple (or subclass: OrderedDict, namedtuple...) by its true type."""
    return issubclass(type(obj), CONTAINERS)


def device_of(obj: Any) -> str:
    """``cpu`` for NumPy, the tensor's device otherwise (``?`` when the tensor refuses to say)."""
    if not is_tensor(obj):
        return "cpu"
    try:
        return str(obj.device)
    except Exception:  # noqa: BLE001 - a subclass that refuses
        return "?"


def dtype_of(obj: Any) -> str:
    """``torch.float32`` or ``float64`` (NumPy's name); ``?`` when the tensor refuses to say."""
    try:
        return str(obj.dtype) if is_tensor(obj) else numpy_dtype_name(np.asarray(obj).dtype)
    except Exception:  # noqa: BLE001
        return "?"


def nbytes_of(obj: Any) -> int:
    """Logical bytes of a tensor or array (0 for what has none, or refuses to say)."""
    try:
        if is_tensor(obj):
            if is_uninitialized(obj):
                return 0
            if getattr(obj, "is_nested", False):
                return int(sum(c.numel() for c in obj.unbind()) * obj.element_size())
            return int(obj.numel() * obj.element_size())
        return int(np.ma.getdata(obj).nbytes) if is_masked_array(obj) else int(np.asarray(obj).nbytes)
    except Exception:  # noqa: BLE001 - exotic tensor
        return 0


def key_label(parent: str, key: Any) -> str:
    """``parent['key']`` / ``parent[0]``."""
    return f"{parent}[{key!r}]"


def dict_key_label(parent: str, index: int) -> str:
    """``parent.keys()[i]``: where a tensor used as a dict key sits."""
    return f"{parent}.keys()[{index}]"


def container_items(obj: Any) -> list[tuple[Any, Any]]:
    """(key, value) pairs of a dict, list or tuple."""
    return list(obj.items()) if isinstance(obj, dict) else list(enumerate(obj))


def leaves(obj: Any, label: str, depth: int = 0, seen: set[int] | None = None, keys: bool = True) -> Iterator[tuple[str, Any]]:
    """Every tensor and array inside ``obj`` with its path: module parameters and buffers,
    container elements (nested up to :data:`MAX_DEPTH`, each container once, so cycles end) and,
    with ``keys``, tensors used as dict keys."""
    seen = set() if seen is None else seen
    if is_array(obj):
        yield label, obj
    elif is_module(obj):
        for pname, p in obj.named_parameters(remove_duplicate=False):
            yield f"{label}.{pname}", p
        for bname, b in obj.named_buffers(remove_duplicate=False):
            if b is not None:
                yield f"{label}.{bname}", b
    elif is_container(obj) and depth < MAX_DEPTH and id(obj) not in seen:
        seen.add(id(obj))
        if keys and isinstance(obj, dict):
            for i, key in enumerate(list(obj)[:MAX_LEAVES]):
                if is_array(key):
                    yield dict_key_label(label, i), key
        for key, value in container_items(obj)[:MAX_LEAVES]:
            yield from leaves(value, key_label(label, key), depth + 1, seen, keys)


def has_leaves(obj: Any) -> bool:
    """True when a dict, list or tuple holds a tensor, array or module somewhere inside."""
    for _, _leaf in leaves(obj, ""):
        return True
    return _holds_module(obj, 0, set())


def _holds_module(obj: Any, depth: int, seen: set[int]) -> bool:
    if is_module(obj):
        return True
    if is_container(obj) and depth < MAX_DEPTH and id(obj) not in seen:
        seen.add(id(obj))
        return any(_holds_module(v, depth + 1, seen) for _, v in container_items(obj)[:MAX_LEAVES])
    return False


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(parameters, state tensors) of an optimizer."""
    params = [p for group in opt.param_groups for p in group["params"]]
    state = [v for st in opt.state.values() for v in st.values() if is_tensor(v)]
    return params, state


def is_movable(obj: Any) -> bool:
    """What ``%todevice`` can move: tensors, arrays, modules, optimizers, containers of them."""
    if is_array(obj) or is_module(obj) or is_optimizer(obj):
        return True
    return is_container(obj) and has_leaves(obj)


@dataclass(kw_only=True)
class PlacementRow:
    """One variable: where its data lives."""

    name: str
    type: str
    kind: str  # "tensor" | "array" | "module" | "optimizer" | "container" | "unreadable"
    device: str  # one device, or several joined by ", "
    dtype: str
    shape: list[int] | None
    nbytes: int
    mixed: bool  # its tensors sit on more than one device
    note: str | None = None
    placements: list[str] | None = None  # a DTensor's placements ("Shard(0)"); None: not sharded
    local_nbytes: int | None = None  # bytes on this rank, for what holds DTensors (nbytes: global logical bytes)


#: Said wherever DTensors could move: a mesh lives on one device type, on every rank.
SPLIT_MESH = ("sharded tensors (DTensor) belong to a device mesh on every rank: moving them on one rank only splits the mesh "
              "across device types (the next collective fails or hangs); run the same %todevice on every rank (e.g. %px %todevice cuda model)")


def _counted(counter: Counter[str]) -> str:
    return ", ".join(counter) if len(counter) <= 1 else ", ".join(f"{k} ({v})" for k, v in counter.items())


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def placement_row(name: str, obj: Any) -> PlacementRow | None:
    """The placement of one variable (None for what ``%todevice`` does not move); an object
    that raises while it is read gets a row of unknowns whose note says what it raised."""
    try:
        return _placement_row(name, obj)
    except Exception as exc:  # noqa: BLE001 - one broken object never breaks the listing
        return PlacementRow(name=name, type=type_name(obj), kind="unreadable", device="?", dtype="?", shape=None, nbytes=0, mixed=False, note=f"could not be read: {describe_exception(exc)}")


def _placement_row(name: str, obj: Any) -> PlacementRow | None:
    if is_tensor(obj):
        if is_uninitialized(obj):
            return PlacementRow(name=name, type=type_name(obj), kind="tensor", device=str(obj.device), dtype=str(obj.dtype), shape=None, nbytes=0, mixed=False, note=UNINITIALIZED)
        shape = None if getattr(obj, "is_nested", False) else list(obj.shape)
        row = PlacementRow(name=name, type=type_name(obj), kind="tensor", device=str(obj.device), dtype=str(obj.dtype), shape=shape, nbytes=nbytes_of(obj), mixed=False)
        dt = as_dtensor(obj)
        if dt is not None:
            local = dt.to_local()
            placed = [placement_text(p) for p in dt.placements]
            local_bytes = local.numel() * local.element_size()
            words = f"a DTensor ({', '.join(placed)}) on {mesh_words(list(dt.device_mesh.shape), dt.device_mesh.device_type)}: {local_bytes:,} bytes on this rank of {row.nbytes:,}"
            row = dataclasses.replace(row, type="torch.distributed.tensor.DTensor", placements=placed, local_nbytes=local_bytes, note=words)
        return row
    if is_array(obj):
        arr = np.ma.getdata(obj) if is_masked_array(obj) else np.asarray(obj)
        note = None
        if is_masked_array(obj):
            masked = masked_count(obj)
            note = f"a masked array ({masked:,} of {arr.size:,} masked): %todevice refuses it (torch has no masked arrays)"
        return PlacementRow(name=name, type=type_name(obj), kind="array", device="cpu", dtype=numpy_dtype_name(arr.dtype), shape=list(arr.shape), nbytes=int(arr.nbytes), mixed=False, note=note)
    if is_optimizer(obj):
        params, state = optimizer_tensors(obj)
        pdev = Counter(str(p.device) for p in params)
        sdev = Counter(str(s.device) for s in state if not (s.dim() == 0 and s.device.type == "cpu"))
        note = None
        if sdev and set(sdev) != set(pdev):
            note = f"state on {', '.join(sdev)} but parameters on {', '.join(pdev)}: step() will fail or be slow"
        both = pdev + sdev
        return PlacementRow(
            name=name, type=type_name(obj), kind="optimizer", device=_counted(both) or "-",
            dtype=", ".join(sorted({str(p.dtype) for p in params})) or "-", shape=None,
            nbytes=sum(nbytes_of(s) for s in state), mixed=len(both) > 1, note=note,
        )
    if is_module(obj) or (is_container(obj) and has_leaves(obj)):
        seen: set[int] = set()
        devices: Counter[str] = Counter()
        dtypes: Counter[str] = Counter()
        total = count = lazy = key_tensors = sharded = local_total = 0
        for label, leaf in leaves(obj, name):
            if id(leaf) in seen:
                continue
            seen.add(id(leaf))
            count += 1
            dt = as_dtensor(leaf)
            sharded += dt is not None
            local_total += nbytes_of(dt.to_local() if dt is not None else leaf)
            lazy += is_uninitialized(leaf)
            key_tensors += ".keys()[" in label
            devices[device_of(leaf)] += 1
            dtypes[dtype_of(leaf)] += 1
            total += nbytes_of(leaf)
        module = is_module(obj)
        row_type = type_name(obj) if module else type(obj).__name__
        notes = []
        if len(devices) > 1:
            what = "parameters and buffers" if module else "elements"
            notes.append(f"its {what} sit on {len(devices)} devices ({_counted(devices)})")
        elif module and not count:
            notes.append("no parameters or buffers")
        elif not module:
            notes.append(f"{_plural(count, 'tensor')} or arrays inside" if count != 1 else "1 tensor or array inside")
        if lazy:
            notes.append(f"a lazy module: {lazy} {UNINITIALIZED}" if module else f"{lazy} {UNINITIALIZED}")
        if key_tensors:
            notes.append(f"{_plural(key_tensors, 'tensor')} used as dict keys (%todevice leaves keys where they are)")
        if sharded:
            notes.append(f"{_plural(sharded, 'DTensor')} (sharded{', FSDP2' if module and any(is_fsdp_module(m) for m in obj.modules()) else ''}): {local_total:,} bytes on this rank of {total:,}")
        return PlacementRow(
            name=name, type=row_type, kind="module" if module else "container", device=_counted(devices) or "-", dtype=", ".join(dtypes) or "-",
            shape=None, nbytes=total, mixed=len(devices) > 1, note="; ".join(notes) or None, local_nbytes=local_total if sharded else None,
        )
    return None


def placement(namespace: Mapping[str, Any], hidden: frozenset[str] | set[str] = frozenset()) -> tuple[list[PlacementRow], list[str]]:
    """Every movable variable of ``namespace`` and notes on how they are spread over devices."""
    rows = []
    for name in user_names(namespace, hidden):
        row = placement_row(name, namespace[name])
        if row is not None:
            rows.append(row)
    notes = []
    for row in rows:
        if row.mixed and row.kind == "module":
            notes.append(f"{row.name} is split across devices ({row.device}): each layer's inputs must be on that layer's device")
        if row.kind == "unreadable":
            notes.append(f"{row.name} ({row.type}) {row.note}")
    if any(row.local_nbytes is not None for row in rows):
        notes.append(SPLIT_MESH)
    used: Counter[str] = Counter()
    for row in rows:
        for dev in row.device.split(", "):
            used[dev.split(" (")[0]] += 1
    used.pop("-", None)
    used.pop("?", None)
    if len(used) > 1:
        spread = ", ".join(f"{k} ({v})" for k, v in used.items())
        notes.append(f"your data lives on {len(used)} devices: {spread}; an operation that mixes two of them fails with "
                     "'Expected all tensors to be on the same device'")
    return rows, notes
