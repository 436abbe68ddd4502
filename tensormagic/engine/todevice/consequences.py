"""What a move silently breaks: sharing that ends, names left on the old tensor, optimizers left behind.

Each function compares the namespace's tensors and arrays before a move with what they are
after it, and returns one warning per consequence (the fix included).  Other names are
searched at any depth: containers (values and keys), sets, and the attributes of plain objects
(a dataclass, a ``SimpleNamespace``, a data loader), within a budget of visited objects.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tensormagic.engine.namespace import unreadable, user_names
from tensormagic.engine.naming import is_array, is_module, is_optimizer, is_tensor
from tensormagic.engine.tensorinfo import memory
from tensormagic.engine.todevice.devices import device_label
from tensormagic.engine.todevice.placement import (
    container_items,
    device_of,
    dict_key_label,
    key_label,
    leaves,
)

#: Objects (containers, plain objects) visited at most while looking for other references to
#: what a move replaces; past it the report says the search stopped.
MAX_SCAN = 200_000
#: Types whose attributes are never searched (they hold code and configuration, not data).
_OPAQUE = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType, str, bytes, bytearray, memoryview, range, int, float, complex)


def _kind(obj: Any) -> str:
    if isinstance(obj, np.ndarray):
        return "NumPy array"
    if isinstance(obj, torch.nn.Parameter):
        return "parameter"
    return "tensor" if is_tensor(obj) else type(obj).__name__


def _related(a: Any, b: Any) -> tuple[str, str] | None:
    if a is b:
        return memory.SAME_OBJECT, ""
    return memory.relation(a, b, memory.memory_region(a), memory.memory_region(b))


@dataclass
class Leaf:
    label: str
    obj: Any
    owner: str  # the top-level name it belongs to
    moved: bool


@dataclass
class Scan:
    """Every tensor and array of a namespace before a move, and how the search went."""

    leaves: list[Leaf] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # objects that raised while read
    budget: int = MAX_SCAN
    cut_short: bool = False


def references(obj: Any, label: str, scan: Scan) -> Iterator[tuple[str, Any]]:
    """Every tensor and array reachable from ``obj``, with its path: module parameters and
    buffers, dict values and keys, list, tuple and set elements, and the attributes of plain
    objects, at any depth (each object once; ``scan.budget`` objects at most)."""
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [(label, obj)]
    while stack:
        where, value = stack.pop()
        if is_array(value):
            yield where, value
            continue
        if is_module(value):
            yield from leaves(value, where, keys=False)
            continue
        if id(value) in seen or is_optimizer(value) or isinstance(value, _OPAQUE) or value is None:
            continue
        if scan.budget <= 0:
            scan.cut_short = True
            return
        seen.add(id(value))
        scan.budget -= 1
        children: list[tuple[str, Any]] = []
        if isinstance(value, dict):
            children += [(dict_key_label(where, i), k) for i, k in enumerate(value) if is_array(k)]
        if isinstance(value, (dict, list, tuple)):
            children += [(key_label(where, k), v) for k, v in container_items(value)]
        elif isinstance(value, (set, frozenset)):
            children += [(f"{where} (a set element)", v) for v in value]
        else:
            try:
                attrs = object.__getattribute__(value, "__dict__")
            except Exception:  # noqa: BLE001 - no attribute dict (or a hostile one): nothing to search
                continue
            if isinstance(attrs, dict):
                children += [(f"{where}.{k}", v) for k, v in list(attrs.items()) if isinstance(k, str)]
        stack.extend(reversed(children))


def collect_leaves(namespace: Mapping[str, Any], moved: Sequence[str], hidden: frozenset[str] | set[str]) -> Scan:
    """The tensors and arrays of every name: the moved names' as :func:`leaves` moves them,
    the others' through :func:`references` (any depth).  Optimizers not moved are left to
    :func:`optimizer_warnings`; a name that raises while read is skipped and noted."""
    scan = Scan()
    for name in user_names(namespace, hidden):
        obj = namespace[name]
        if name not in moved and is_optimizer(obj):
            continue
        try:
            found = list(leaves(obj, name, keys=False) if name in moved else references(obj, name, scan))
        except Exception as exc:  # noqa: BLE001 - one unreadable object never breaks the move of others
            scan.problems.append(unreadable(name, obj, exc))
            continue
        scan.leaves += [Leaf(label, leaf, name, name in moved) for label, leaf in found]
    return scan


def related_pairs(items: list[Leaf]) -> list[tuple[int, int, str]]:
    """(i, j, relation) for leaves that are the same object or share memory, one moved at least."""
    pairs: dict[tuple[int, int], str] = {}
    by_id: dict[int, list[int]] = {}
    for i, item in enumerate(items):
        by_id.setdefault(id(item.obj), []).append(i)
    for group in by_id.values():  # every other name of a moved object, paired with a moved one
        moved = [i for i in group if items[i].moved]
        if moved:
            for i in group:
                if i != moved[0]:
                    pairs[(moved[0], i)] = memory.SAME_OBJECT
    regions = [memory.memory_region(item.obj) for item in items]
    for i, j in memory.overlapping_pairs(regions):
        if (i, j) in pairs or (j, i) in pairs or not (items[i].moved or items[j].moved) or items[i].obj is items[j].obj:
            continue
        rel = memory.relation(items[i].obj, items[j].obj, regions[i], regions[j])
        if rel is not None:
            pairs[(i, j)] = rel[0]
    return [(i, j, rel) for (i, j), rel in pairs.items()]


def aliasing_warnings(
    items: list[Leaf],
    pairs: list[tuple[int, int, str]],
    new_of: Callable[[Leaf], Any],
    sources: dict[int, str],
    command: Callable[[list[str]], str],
    movable: Callable[[str], bool],
) -> list[str]:
    """One warning per pair that was the same object or shared memory before the move and no
    longer does: the fix is to move the names together (or, where the other name cannot move,
    such as an attribute of a plain object, to point it at the moved one)."""
    out: list[str] = []
    for i, j, rel in pairs:
        a, b = items[i], items[j]
        if not a.moved:  # the moved one first
            a, b = b, a
        if a.owner == b.owner and a.label == b.label:
            continue
        na, nb = new_of(a), new_of(b)
        if _related(na, nb) is not None:
            continue
        if b.moved:
            if a.owner != b.owner or a.label != b.label:
                out.append(f"{a.label} and {b.label} shared memory before the move; now they are separate copies: changes to one will not show in the other")
        elif rel == memory.SAME_OBJECT:
            where = device_label(sources.get(id(b.obj), device_of(b.obj)))
            owners = [a.owner, b.owner] if b.owner != a.owner else [a.owner]
            fix = f"to keep them together: {command(owners)}" if movable(b.owner) else f"point it at the moved one ({a.label})"
            out.append(f"{b.label} still refers to the old {where} {_kind(b.obj)} ({a.label} moved); {fix}")
        else:
            out.append(f"{a.label} no longer shares memory with {_kind(b.obj)} {b.label}: changes to one will not show in the other")
    return out


def optimizer_warnings(namespace: Mapping[str, Any], names: Sequence[str], memo: dict[int, Any], labels: dict[int, str], target: torch.device, hidden: frozenset[str] | set[str], command: Callable[[list[str]], str]) -> list[str]:
    out: list[str] = []
    for oname in user_names(namespace, hidden):
        opt = namespace[oname]
        if not is_optimizer(opt):
            continue
        params = [p for group in opt.param_groups for p in group["params"]]
        if oname in names:
            now = {str(p.device) for p in params}
            if now and now != {str(target)}:
                out.append(f"{oname}'s state is now on {target} but its parameters are on {', '.join(sorted(now))}: move their module too, e.g. {command([oname])} with the model's name")
            continue
        stale = [labels.get(id(p), "a parameter") for p in params if id(p) in memo and memo[id(p)] is not p]
        if stale:
            out.append(f"optimizer {oname} still updates the old {', '.join(stale[:3])}{' ...' if len(stale) > 3 else ''}, not the moved one: move it too ({command([oname])}) or create it again")
            continue
        moved_params = [p for p in params if id(p) in memo]
        if moved_params:
            state_devices = {str(v.device) for p in moved_params for k, v in opt.state.get(p, {}).items() if isinstance(v, torch.Tensor) and not (k == "step" and v.dim() == 0 and v.device.type == "cpu")}
            if state_devices - {str(target)}:
                out.append(f"{oname}'s state is still on {', '.join(sorted(state_devices))} while its parameters are now on {target}: move it too ({command([oname])}) or {oname}.step() will fail")
    return out
