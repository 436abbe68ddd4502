"""FSDP2 modules and DTensor parameters as ``%%autograd`` and ``%tensorinfo model`` see them.

FSDP2 (``fully_shard``) keeps each parameter as a sharded DTensor and, around forward and
backward, works on a plain unsharded copy: autograd's leaves are those copies, and FSDP's hooks
reduce-scatter their gradients into the sharded parameters' ``.grad``.  :func:`unsharded_copies`
maps each copy to the parameter it stands for (through FSDP's private state, guarded: an empty
map where torch differs); :func:`grad_marks` lets a cell's report tell which sharded
parameters' ``.grad`` changed during the cell: those gradients were computed, never unused.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from tensormagic.engine.sharding.detect import as_dtensor, is_dtensor, is_fsdp_module

#: What identifies a ``.grad`` at one moment: the object, and its local shard's version and address.
GradMark = tuple[int, int, int] | None


def grad_mark(p: torch.Tensor) -> GradMark:
    g = p.grad
    if g is None:
        return None
    local = g.to_local() if is_dtensor(g) else g  # type: ignore[attr-defined]
    try:
        return (id(g), int(local._version), int(local.data_ptr()))
    except Exception:  # noqa: BLE001 - inference or odd tensors: the object alone
        return (id(g), -1, -1)


def grad_marks(objects: Iterable[Any]) -> dict[int, GradMark]:
    """The ``.grad`` marks of every DTensor parameter of the modules among ``objects``."""
    marks: dict[int, GradMark] = {}
    for obj in objects:
        if not isinstance(obj, torch.nn.Module):
            continue
        try:
            for p in obj.parameters():
                if is_dtensor(p):
                    marks[id(p)] = grad_mark(p)
        except Exception:  # noqa: BLE001 - a half-built module: nothing to mark
            continue
    return marks


def grad_changed(p: torch.Tensor, before: dict[int, GradMark]) -> bool:
    """True when ``p.grad`` is set now and is not what it was when ``before`` was taken."""
    if id(p) not in before or p.grad is None:
        return False
    return grad_mark(p) != before[id(p)]


def unsharded_copies(modules: Iterable[tuple[str, Any]]) -> dict[int, tuple[str, torch.Tensor]]:
    """``id(unsharded copy) -> (parameter's name, sharded parameter)`` for every FSDP2 module
    among the named ``modules`` (their submodules included)."""
    out: dict[int, tuple[str, torch.Tensor]] = {}
    for root_name, root in modules:
        if not isinstance(root, torch.nn.Module):
            continue
        try:
            names = {id(p): f"{root_name}.{n}" for n, p in root.named_parameters(remove_duplicate=False)}
            for m in root.modules():
                if not is_fsdp_module(m):
                    continue
                state = m._get_fsdp_state()  # type: ignore[operator]
                for group in getattr(state, "_fsdp_param_groups", None) or []:
                    for fp in group.fsdp_params:
                        sharded = fp.sharded_param
                        copy = getattr(fp, "_unsharded_param", None)
                        if copy is not None and id(sharded) in names:
                            out[id(copy)] = (names[id(sharded)], sharded)
        except Exception:  # noqa: BLE001 - a torch whose FSDP state differs: no map
            continue
    return out


def fsdp_roots(namespace: Mapping[str, Any]) -> list[tuple[str, torch.nn.Module]]:
    """The FSDP2 models among ``namespace``'s values (none, at no cost, until ``fully_shard`` was used)."""
    if "torch.distributed.fsdp" not in sys.modules:
        return []
    try:
        from torch.distributed.fsdp import FSDPModule

        if not FSDPModule.__subclasses__():  # fully_shard makes a subclass per module class: none, no model
            return []
    except ImportError:  # pragma: no cover - a torch built without distributed
        return []
    return [(n, v) for n, v in list(namespace.items()) if isinstance(v, torch.nn.Module) and is_fsdp_module(v)]


def placement_words(t: torch.Tensor) -> str | None:
    """``Shard(0)`` / ``Shard(0), Replicate()`` of a DTensor, None for a plain tensor."""
    dt = as_dtensor(t)
    if dt is None:
        return None
    from tensormagic.engine.sharding.layout import placement_text

    return ", ".join(placement_text(p) for p in dt.placements)


__all__ = ["GradMark", "fsdp_roots", "grad_changed", "grad_mark", "grad_marks", "placement_words", "unsharded_copies"]
