"""What a move silently breaks: sharing that ends, names left on the old tensor, optimizers left behind.

Each function compares the namespace's tensors and arrays before a move with what they are
after it, and returns one warning per consequence (the fix included).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tensormagic.engine.namespace import user_names
from tensormagic.engine.tensorinfo import memory
from tensormagic.engine.todevice.devices import device_label
from tensormagic.engine.todevice.placement import device_of, leaves

def _kind(obj: Any) -> str:
    if isinstance(obj, np.ndarray):
        return "NumPy array"
    if isinstance(obj, torch.nn.Parameter):
        return "parameter"
    return "tensor" if isinstance(obj, torch.Tensor) else type(obj).__name__


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


def collect_leaves(namespace: Mapping[str, Any], moved: Sequence[str], hidden: frozenset[str] | set[str]) -> list[Leaf]:
    found: list[Leaf] = []
    for name in user_names(namespace, hidden):
        obj = namespace[name]
        if name not in moved and isinstance(obj, torch.optim.Optimizer):
            continue
        for label, leaf in leaves(obj, name):
            found.append(Leaf(label, leaf, name, name in moved))
            if len(found) > 50_000:
                return found
    return found


def related_pairs(items: list[Leaf]) -> list[tuple[int, int, str]]:
    """(i, j, relation) for leaves that are the same object or share memory, one moved at least."""
    pairs: dict[tuple[int, int], str] = {}
    by_id: dict[int, int] = {}
    for i, item in enumerate(items):
        j = by_id.setdefault(id(item.obj), i)
        if j != i and (item.moved or items[j].moved):
            pairs[(j, i)] = memory.SAME_OBJECT
    regions = [memory.memory_region(item.obj) for item in items]
    for i, j in memory.overlapping_pairs(regions):
        if (i, j) in pairs or (j, i) in pairs or not (items[i].moved or items[j].moved) or items[i].obj is items[j].obj:
            continue
        rel = memory.relation(items[i].obj, items[j].obj, regions[i], regions[j])
        if rel is not None:
            pairs[(i, j)] = rel[0]
    return [(i, j, rel) for (i, j), rel in pairs.items()]


def aliasing_warnings(items: list[Leaf], pairs: list[tuple[int, int, str]], new_of: Callable[[Leaf], Any], sources: dict[int, str], command: Callable[[list[str]], str]) -> list[str]:
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
            out.append(f"{b.label} still refers to the old {where} {_kind(b.obj)} ({a.label} moved); to keep them together: {command(owners)}")
        else:
            out.append(f"{a.label} no longer shares memory with {_kind(b.obj)} {b.label}: changes to one will not show in the other")
    return out


def optimizer_warnings(namespace: Mapping[str, Any], names: Sequence[str], memo: dict[int, Any], labels: dict[int, str], target: torch.device, hidden: frozenset[str] | set[str], command: Callable[[list[str]], str]) -> list[str]:
    out: list[str] = []
    for oname in user_names(namespace, hidden):
        opt = namespace[oname]
        if not isinstance(opt, torch.optim.Optimizer):
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
